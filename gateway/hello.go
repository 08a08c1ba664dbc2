package gateway

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/clawgate/clawgate/protocol"
)

// The hello-ok response is encoded in parts so that its largest part,
// features.methods and features.events, is encoded once per configuration
// instead of once per connection. The result is byte for byte what
// json.Marshal(protocol.OKResponse(id, hello)) gives
// (TestHelloFrameMatchesMarshal): encoding/json writes a struct's fields in
// order, so the parts splice into the same document.

// featuresCache is the encoded features object for one method count and
// event list (methods are only ever added, at configuration).
type featuresCache struct {
	methods int
	events  []string
	json    []byte
}

// featuresJSON returns the encoded features object, re-encoding only when
// the method set or the event list changed.
func (s *Server) featuresJSON() []byte {
	ev := s.implementedEvents()
	if fc := s.features.Load(); fc != nil && fc.methods == len(s.methods) && slices.Equal(fc.events, ev) {
		return fc.json
	}
	fc := &featuresCache{methods: len(s.methods), events: ev,
		json: mustJSON(protocol.Features{Methods: s.methodNames(), Events: ev})}
	s.features.Store(fc)
	return fc.json
}

// helloFrame encodes the response frame answering connect request id with
// h, whose Features are replaced by features (an encoded features object),
// into one buffer: the fixed fields are written directly (appendJSONString
// escapes exactly as encoding/json does), and only the snapshot and
// pluginSurfaceUrls go through encoding/json.
func helloFrame(id string, h *protocol.HelloOK, features []byte) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, 1536+len(id)+len(features)+len(h.Server.Version)+len(h.Auth.DeviceToken)))
	b := buf.AvailableBuffer()
	b = append(b, `{"type":"`+protocol.TypeRes+`","id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"ok":true,"payload":{"type":`...)
	b = appendJSONString(b, h.Type)
	b = append(b, `,"protocol":`...)
	b = strconv.AppendInt(b, int64(h.Protocol), 10)
	b = append(b, `,"server":{"version":`...)
	b = appendJSONString(b, h.Server.Version)
	if h.Server.BootID != "" {
		b = append(b, `,"bootId":`...)
		b = appendJSONString(b, h.Server.BootID)
	}
	b = append(b, `,"connId":`...)
	b = appendJSONString(b, h.Server.ConnID)
	b = append(b, `},"features":`...)
	b = append(b, features...)
	b = append(b, `,"snapshot":`...)
	buf.Write(b)
	enc := json.NewEncoder(buf)
	if err := encodeValue(buf, enc, h.Snapshot); err != nil {
		return nil, err
	}
	b = buf.AvailableBuffer()
	if h.CanvasHostURL != "" {
		b = append(b, `,"canvasHostUrl":`...)
		b = appendJSONString(b, h.CanvasHostURL)
	}
	if len(h.PluginSurfaceURLs) > 0 {
		b = append(b, `,"pluginSurfaceUrls":`...)
		buf.Write(b)
		if err := encodeValue(buf, enc, h.PluginSurfaceURLs); err != nil {
			return nil, err
		}
		b = buf.AvailableBuffer()
	}
	b = append(b, `,"auth":{`...)
	if h.Auth.DeviceToken != "" {
		b = append(b, `"deviceToken":`...)
		b = appendJSONString(b, h.Auth.DeviceToken)
		b = append(b, ',')
	}
	b = append(b, `"role":`...)
	b = appendJSONString(b, h.Auth.Role)
	b = append(b, `,"scopes":`...)
	if h.Auth.Scopes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, sc := range h.Auth.Scopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, sc)
		}
		b = append(b, ']')
	}
	if h.Auth.IssuedAtMs != 0 {
		b = append(b, `,"issuedAtMs":`...)
		b = strconv.AppendInt(b, h.Auth.IssuedAtMs, 10)
	}
	b = append(b, `},"policy":{"maxPayload":`...)
	b = strconv.AppendInt(b, int64(h.Policy.MaxPayload), 10)
	b = append(b, `,"maxBufferedBytes":`...)
	b = strconv.AppendInt(b, int64(h.Policy.MaxBufferedBytes), 10)
	b = append(b, `,"tickIntervalMs":`...)
	b = strconv.AppendInt(b, int64(h.Policy.TickIntervalMs), 10)
	b = append(b, "}}}"...)
	buf.Write(b)
	return buf.Bytes(), nil
}

// encodeValue appends v's JSON, as json.Marshal gives it, to buf.
func encodeValue(buf *bytes.Buffer, enc *json.Encoder, v any) error {
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	return nil
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it (with its HTML escaping: <, > and & as \u003c, \u003e, \u0026;
// invalid UTF-8 as \ufffd; U+2028 and U+2029 escaped).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
