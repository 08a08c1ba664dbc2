package providers

import (
	"container/list"
	"context"
	"sync"
)

// MessageLog persists admitted inbound messages per conversation.
type MessageLog interface {
	Append(ctx context.Context, m Inbound) error
	// Recent returns up to limit of the conversation's latest messages,
	// oldest first.
	Recent(ctx context.Context, key ConversationKey, limit int) ([]Inbound, error)
}

// MemoryLog is a bounded in-memory MessageLog: the last PerConversation
// messages of the last Conversations conversations (least recently active
// evicted first).
type MemoryLog struct {
	perConv, maxConvs int

	mu    sync.Mutex
	convs map[ConversationKey]*list.Element
	lru   *list.List // front = least recently active
}

type memConv struct {
	key  ConversationKey
	msgs []Inbound // ring, oldest first after compaction
}

// NewMemoryLog returns a MemoryLog; zero limits take 200 messages and
// 1000 conversations.
func NewMemoryLog(perConversation, conversations int) *MemoryLog {
	if perConversation <= 0 {
		perConversation = 200
	}
	if conversations <= 0 {
		conversations = 1000
	}
	return &MemoryLog{perConv: perConversation, maxConvs: conversations,
		convs: make(map[ConversationKey]*list.Element), lru: list.New()}
}

// Append implements MessageLog.
func (l *MemoryLog) Append(_ context.Context, m Inbound) error {
	key := m.ConversationKey()
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.convs[key]
	if !ok {
		el = l.lru.PushBack(&memConv{key: key})
		l.convs[key] = el
		for l.lru.Len() > l.maxConvs {
			old := l.lru.Front()
			l.lru.Remove(old)
			delete(l.convs, old.Value.(*memConv).key)
		}
	} else {
		l.lru.MoveToBack(el)
	}
	c := el.Value.(*memConv)
	if len(c.msgs) >= l.perConv {
		n := copy(c.msgs, c.msgs[len(c.msgs)-l.perConv+1:])
		c.msgs = c.msgs[:n]
	}
	c.msgs = append(c.msgs, m)
	return nil
}

// Recent implements MessageLog.
func (l *MemoryLog) Recent(_ context.Context, key ConversationKey, limit int) ([]Inbound, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.convs[key]
	if !ok {
		return nil, nil
	}
	msgs := el.Value.(*memConv).msgs
	if limit > 0 && len(msgs) > limit {
		msgs = msgs[len(msgs)-limit:]
	}
	return append([]Inbound(nil), msgs...), nil
}

// Conversations returns how many conversations are held.
func (l *MemoryLog) Conversations() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.convs)
}
