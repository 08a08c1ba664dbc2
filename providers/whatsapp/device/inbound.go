package device

import (
	"context"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/clawgate/clawgate/providers"
)

// deliver hands one message to the gateway; the Supervisor applies the
// account's policy.
func (s *session) deliver(ctx context.Context, ev *events.Message) {
	if s.sink == nil {
		return
	}
	in, ok := s.toInbound(ctx, ev)
	if !ok {
		return
	}
	if err := s.sink.Deliver(ctx, in); err != nil && ctx.Err() == nil {
		s.log.Warn("inbound message not delivered", "id", in.ID, "err", err)
	}
}

// toInbound converts a whatsmeow message. Own messages, status updates,
// broadcast lists, newsletters and messages without text are skipped.
func (s *session) toInbound(ctx context.Context, ev *events.Message) (providers.Inbound, bool) {
	info := ev.Info
	if info.IsFromMe || ev.Message == nil {
		return providers.Inbound{}, false
	}
	chat := info.Chat.ToNonAD()
	var chatType providers.ChatType
	switch chat.Server {
	case types.DefaultUserServer, types.HiddenUserServer:
		chatType = providers.ChatDirect
	case types.GroupServer:
		chatType = providers.ChatGroup
	default:
		return providers.Inbound{}, false
	}
	sender, resolved := s.resolveSender(ctx, info.Sender, info.SenderAlt)
	if sender == "" {
		s.log.Info("message from an unsupported sender ignored", "sender", info.Sender.String())
		return providers.Inbound{}, false
	}
	if !resolved {
		// I6: a LID with no phone mapping. It stays a LID, so it can only
		// match an allowlist entry that names this LID: fail closed.
		s.log.Warn("sender LID has no phone-number mapping; it matches only an allowlist entry naming the LID",
			"lid", sender, "chat", chat.String(), "id", info.ID)
	}
	in := providers.Inbound{Kind: providers.KindMessage, MessageID: info.ID, ChatType: chatType,
		SenderID: sender, SenderName: info.PushName, Time: info.Timestamp}
	if chatType == providers.ChatGroup {
		in.ChatID = chat.String()
	} else {
		in.ChatID = sender // a direct chat is the sender's, by the same id
	}
	in.ID = in.ChatID + ":" + info.ID

	msg := ev.Message
	switch pm, react := msg.GetProtocolMessage(), msg.GetReactionMessage(); {
	case pm != nil:
		if pm.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT {
			return providers.Inbound{}, false // revokes, key shares, history notices
		}
		in.Kind, in.MessageID, in.Text = providers.KindEdit, pm.GetKey().GetID(), textOf(pm.GetEditedMessage())
	case react != nil:
		in.Kind, in.MessageID, in.Text = providers.KindReaction, react.GetKey().GetID(), react.GetText()
	default:
		in.Text = textOf(msg)
	}
	if in.Text == "" || in.MessageID == "" {
		return providers.Inbound{}, false // media without caption, removed reactions, ...
	}
	return in, true
}

// textOf returns the text of a plain or extended text message.
func textOf(m *waE2E.Message) string {
	if t := m.GetConversation(); t != "" {
		return t
	}
	return m.GetExtendedTextMessage().GetText()
}

// resolveSender maps a sender JID to its gateway id. A LID is resolved to
// its phone number from the message itself (SenderAlt) or whatsmeow's LID
// map; resolved is false when no mapping exists, and the id is the LID.
func (s *session) resolveSender(ctx context.Context, sender, alt types.JID) (id string, resolved bool) {
	sender = sender.ToNonAD()
	switch sender.Server {
	case types.DefaultUserServer:
		if sender.User == "" {
			return "", false
		}
		return phoneID(sender), true
	case types.HiddenUserServer:
		if sender.User == "" {
			return "", false
		}
		if alt.Server == types.DefaultUserServer && alt.User != "" {
			return phoneID(alt.ToNonAD()), true
		}
		if lids := s.st.dev.LIDs; lids != nil {
			pn, err := lids.GetPNForLID(ctx, sender)
			if err != nil {
				s.log.Warn("LID lookup failed", "lid", lidID(sender), "err", err)
			} else if pn.Server == types.DefaultUserServer && pn.User != "" {
				return phoneID(pn.ToNonAD()), true
			}
		}
		return lidID(sender), false
	}
	return "", false
}
