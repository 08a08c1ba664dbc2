package gateway

import (
	"context"
	"strings"
	"sync"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/store"
)

// ProviderLink is what agent routing needs from the messaging providers:
// the admitted inbound messages and a way to answer. *providers.Supervisor
// (a providers.Hub) satisfies it.
type ProviderLink interface {
	Watch(fn func(providers.Event)) (stop func())
	Send(ctx context.Context, r providers.Route, msg providers.Outbound) (providers.Result, error)
}

// Routing limits.
const (
	// inboundQueue bounds provider messages waiting to become runs.
	inboundQueue = 256
	// replyChunkRunes splits long replies (Discord allows 2000 characters,
	// Telegram 4096).
	replyChunkRunes = 2000
)

// startRouting subscribes to the providers: every admitted inbound text
// message (the Supervisor has already applied the account's allowlist)
// starts a run in the conversation's session, and the final text goes back
// through the same account to the same chat. stop unsubscribes; the worker
// ends with ctx.
func (s *Server) startRouting(ctx context.Context, wg *sync.WaitGroup) (stop func()) {
	link := s.agents.opts.Providers
	if link == nil {
		return func() {}
	}
	queue := make(chan providers.Inbound, inboundQueue)
	unwatch := link.Watch(func(ev providers.Event) {
		in := ev.Inbound
		if in == nil || in.Kind != providers.KindMessage || strings.TrimSpace(in.Text) == "" {
			return
		}
		select {
		case queue <- *in:
		default:
			s.log.Warn("inbound message dropped: agent queue full", "channel", in.Channel, "account", in.AccountID)
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case in := <-queue:
				s.routeInbound(link, in)
			}
		}
	}()
	return unwatch
}

// ProviderSessionKey is the session of one provider conversation:
// "<channel>:<account>:<chat>", plus ":thread:<id>" inside a thread.
func ProviderSessionKey(in providers.Inbound) string {
	key := in.Channel + ":" + in.AccountID + ":" + in.ChatID
	if in.ThreadID != "" {
		key += ":thread:" + in.ThreadID
	}
	return key
}

func (s *Server) routeInbound(link ProviderLink, in providers.Inbound) {
	route := providers.Route{Channel: in.Channel, AccountID: in.AccountID}
	spec := runSpec{
		id: newUUID(), sessionKey: ProviderSessionKey(in), message: in.Text,
		senderID: in.SenderID, senderName: in.SenderName,
		meta: store.SessionMeta{Channel: in.Channel, AccountID: in.AccountID, ChatID: in.ChatID,
			ChatType: string(in.ChatType), ThreadID: in.ThreadID, DisplayName: in.SenderName},
		reply: func(ctx context.Context, text string) error {
			for i, part := range splitRunes(text, replyChunkRunes) {
				out := providers.Outbound{To: in.ChatID, Text: part, ThreadID: in.ThreadID}
				if i == 0 {
					out.ReplyToID = in.MessageID
				}
				if _, err := link.Send(ctx, route, out); err != nil {
					return err
				}
			}
			return nil
		},
	}
	if _, _, err := s.agents.start(spec); err != nil {
		s.log.Warn("inbound message not answered", "channel", in.Channel, "account", in.AccountID, "err", err)
	}
}

// splitRunes cuts s into pieces of at most n runes, preferring to break
// after a newline or a space in the second half of a piece.
func splitRunes(s string, n int) []string {
	var out []string
	r := []rune(s)
	for len(r) > n {
		cut := n
		for i := n - 1; i > n/2; i-- {
			if r[i] == '\n' || r[i] == ' ' {
				cut = i + 1
				break
			}
		}
		out = append(out, string(r[:cut]))
		r = r[cut:]
	}
	if len(r) > 0 {
		out = append(out, string(r))
	}
	return out
}
