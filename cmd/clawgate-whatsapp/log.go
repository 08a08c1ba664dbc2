package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// logHandler sends log records to the gateway, which logs them with its
// own format, level and log ring. Attributes travel as text.
type logHandler struct {
	conn   *ipc.Conn
	level  slog.Level
	attrs  []string // from WithAttrs, keys already prefixed
	prefix string   // group prefix, "g." or ""
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	rec := whatsapp.LogRecord{Level: r.Level, Msg: r.Message, Attrs: append([]string(nil), h.attrs...)}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs = appendAttr(rec.Attrs, h.prefix, a)
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := h.conn.Call(ctx, whatsapp.MethodLog, rec, nil); err != nil {
		// The gateway is gone: stderr is all that is left.
		fmt.Fprintln(os.Stderr, whatsapp.HelperName+":", r.Level, r.Message, rec.Attrs)
	}
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]string(nil), h.attrs...)
	for _, a := range attrs {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

// appendAttr flattens a into key, value pairs.
func appendAttr(out []string, prefix string, a slog.Attr) []string {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			out = appendAttr(out, p, g)
		}
		return out
	}
	if a.Key == "" {
		return out
	}
	return append(out, prefix+a.Key, v.String())
}
