package providers

import (
	"crypto/rand"
	"sort"
	"sync"
	"time"
)

// Pairing limits: how long a code stays valid (and how often one sender
// can get one), and how many may be pending per account.
const (
	PairingTTL        = time.Hour
	MaxPendingPerAcct = 10
	pairingCodeLen    = 8
	maxApproved       = 10000
	maxOffered        = 10000
)

// pairingAlphabet has no 0/O, 1/I/L: codes are read aloud and typed.
const pairingAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// PairingRequest is an unknown sender who asked to talk to the account.
type PairingRequest struct {
	Channel    string
	AccountID  string
	Code       string // what the sender was told; also the request id
	SenderID   string
	SenderName string // display only
	ChatID     string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
}

// pairingBook keeps one account's pending requests and approved senders.
type pairingBook struct {
	now func() time.Time

	mu       sync.Mutex
	pending  map[string]*PairingRequest // sender id → request
	offered  map[string]time.Time       // sender id → last code issued
	approved map[string]bool
}

func newPairingBook(now func() time.Time) *pairingBook {
	return &pairingBook{now: now, pending: map[string]*PairingRequest{}, offered: map[string]time.Time{}, approved: map[string]bool{}}
}

// offer returns a new request for m's sender, or nil when the sender
// already holds a live code (one per sender per PairingTTL) or the account
// has MaxPendingPerAcct pending.
func (b *pairingBook) offer(m *Inbound) *PairingRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expireLocked(now)
	if r, ok := b.pending[m.SenderID]; ok {
		r.LastSeenAt = now
		return nil
	}
	if t, ok := b.offered[m.SenderID]; ok && now.Sub(t) < PairingTTL {
		return nil // dismissed or approved within the hour: no new code yet
	}
	if len(b.pending) >= MaxPendingPerAcct || len(b.offered) >= maxOffered {
		return nil
	}
	b.offered[m.SenderID] = now
	r := &PairingRequest{Channel: m.Channel, AccountID: m.AccountID, Code: newPairingCode(),
		SenderID: m.SenderID, SenderName: m.SenderName, ChatID: m.ChatID,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(PairingTTL)}
	b.pending[m.SenderID] = r
	cp := *r
	return &cp
}

func (b *pairingBook) expireLocked(now time.Time) {
	for id, r := range b.pending {
		if !now.Before(r.ExpiresAt) {
			delete(b.pending, id)
		}
	}
	for id, t := range b.offered {
		if now.Sub(t) >= PairingTTL {
			delete(b.offered, id)
		}
	}
}

// approve admits the sender holding code. It reports the request, or
// false when no live request has that code.
func (b *pairingBook) approve(code string) (PairingRequest, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.now())
	for id, r := range b.pending {
		if r.Code == code {
			delete(b.pending, id)
			if len(b.approved) < maxApproved {
				b.approved[id] = true
			}
			return *r, true
		}
	}
	return PairingRequest{}, false
}

// dismiss drops the request with code without admitting its sender.
func (b *pairingBook) dismiss(code string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, r := range b.pending {
		if r.Code == code {
			delete(b.pending, id)
			return true
		}
	}
	return false
}

func (b *pairingBook) isApproved(sender string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.approved[sender]
}

func (b *pairingBook) list() []PairingRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.now())
	out := make([]PairingRequest, 0, len(b.pending))
	for _, r := range b.pending {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

func newPairingCode() string {
	var raw [pairingCodeLen]byte
	_, _ = rand.Read(raw[:])
	out := make([]byte, pairingCodeLen)
	for i, b := range raw {
		// 256 is not a multiple of 31; the bias (< 1%) does not matter for
		// a code that also needs an operator's approval.
		out[i] = pairingAlphabet[int(b)%len(pairingAlphabet)]
	}
	return string(out)
}
