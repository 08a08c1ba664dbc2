package providers

import (
	"container/list"
	"sync"
)

// seenSet remembers the most recent max keys, so an event a service
// delivers more than once (at-least-once delivery, a replay after a
// reconnect) is processed once.
type seenSet struct {
	max int

	mu    sync.Mutex
	keys  map[string]*list.Element
	order *list.List // front = oldest
}

func newSeenSet(max int) *seenSet {
	return &seenSet{max: max, keys: make(map[string]*list.Element), order: list.New()}
}

// add records key and reports whether it is new.
func (s *seenSet) add(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; ok {
		return false
	}
	s.keys[key] = s.order.PushBack(key)
	for s.order.Len() > s.max {
		oldest := s.order.Front()
		s.order.Remove(oldest)
		delete(s.keys, oldest.Value.(string))
	}
	return true
}

// has reports whether key is remembered.
func (s *seenSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok
}
