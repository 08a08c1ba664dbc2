package authn

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1795733541, 0)

// arrivals used across the limiter tests.
var (
	cliLoopback  = Arrival{Path: PathLoopback, Remote: netip.MustParseAddrPort("127.0.0.1:40000")}
	remoteA      = Arrival{Path: PathTLS, Remote: netip.MustParseAddrPort("203.0.113.9:40000")}
	remoteB      = Arrival{Path: PathTLS, Remote: netip.MustParseAddrPort("198.51.100.7:40000")}
	evilPage     = Arrival{Path: PathLoopback, Remote: netip.MustParseAddrPort("127.0.0.1:40001"), Origin: "https://evil.example"}
	otherPage    = Arrival{Path: PathLoopback, Remote: netip.MustParseAddrPort("127.0.0.1:40002"), Origin: "https://other.example"}
	sameHostProx = Arrival{Path: PathLoopback, Remote: netip.MustParseAddrPort("127.0.0.1:40003"), Forwarded: true}
)

func TestNewLimitKey(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name   string
		a      Arrival
		want   string
		exempt bool
	}{
		{"direct loopback CLI", cliLoopback, "shared-secret|127.0.0.1", true},
		{"direct loopback ::1", Arrival{Path: PathLoopback, Remote: ap("[::1]:1")}, "shared-secret|::1", true},
		{"F4 loopback browser", evilPage, "shared-secret|browser-origin:https://evil.example", false},
		{"F2 loopback Origin null", Arrival{Path: PathLoopback, Remote: ap("127.0.0.1:1"), Origin: "null"},
			"shared-secret|browser-origin:null", false},
		{"A16 same-host proxy", sameHostProx, "shared-secret|proxied-loopback", false},
		{"A16 proxy with origin stays proxied", Arrival{Path: PathLoopback, Remote: ap("127.0.0.1:1"),
			Forwarded: true, Origin: "https://x"}, "shared-secret|proxied-loopback", false},
		{"A16 proxy onto TLS listener", Arrival{Path: PathTLS, Remote: ap("127.0.0.1:1"), Forwarded: true},
			"shared-secret|proxied-loopback", false},
		{"remote IP", remoteA, "shared-secret|203.0.113.9", false},
		{"remote browser keyed by IP", Arrival{Path: PathTLS, Remote: ap("203.0.113.9:1"), Origin: "https://x"},
			"shared-secret|203.0.113.9", false},
		{"IPv4-mapped unmapped", Arrival{Path: PathTLS, Remote: ap("[::ffff:203.0.113.9]:1")}, "shared-secret|203.0.113.9", false},
		{"zone dropped", Arrival{Path: PathTLS, Remote: ap("[fe80::1%eth0]:1")}, "shared-secret|fe80::1", false},
		{"E6 tailnet path loopback peer", Arrival{Path: PathTailnet, Remote: ap("127.0.0.1:1")}, "shared-secret|127.0.0.1", false},
		{"invalid address", Arrival{Path: PathTLS}, "shared-secret|unknown", false},
		{"G10 long origin truncated", Arrival{Path: PathLoopback, Remote: ap("127.0.0.1:1"), Origin: strings.Repeat("o", 5000)},
			"shared-secret|browser-origin:" + strings.Repeat("o", maxOriginKey), false},
	}
	l := NewLimiter(Limits{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := NewLimitKey(LimitSharedSecret, tt.a)
			if k.String() != tt.want || k.Scope() != LimitSharedSecret {
				t.Errorf("key = %s, want %s", k, tt.want)
			}
			if l.exempt(k) != tt.exempt {
				t.Errorf("exempt = %v, want %v", l.exempt(k), tt.exempt)
			}
		})
	}
}

// failN records n failures one second apart from start and returns the
// last result.
func failN(l *Limiter, k LimitKey, start time.Time, n int) (time.Duration, bool) {
	var d time.Duration
	var locked bool
	for i := 0; i < n; i++ {
		d, locked = l.Fail(k, start.Add(time.Duration(i)*time.Second))
	}
	return d, locked
}

func TestLimiterA14BruteForce(t *testing.T) {
	l := NewLimiter(DefaultLimits())
	k := NewLimitKey(LimitSharedSecret, remoteA)
	for i := 0; i < 9; i++ {
		if _, locked := l.Fail(k, t0.Add(time.Duration(i)*time.Second)); locked {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	d, locked := l.Fail(k, t0.Add(9*time.Second))
	if !locked || d != 300*time.Second {
		t.Fatalf("10th failure: %v %v, want locked for 300s", d, locked)
	}
	// 11th attempt: refused before its credential is looked at.
	d, locked = l.Check(k, t0.Add(10*time.Second))
	if !locked || d != 299*time.Second {
		t.Fatalf("11th attempt: %v %v, want locked, retry 299s", d, locked)
	}
	if _, locked := l.Check(NewLimitKey(LimitSharedSecret, remoteB), t0.Add(10*time.Second)); locked {
		t.Error("another IP is locked")
	}
	if _, locked := l.Check(NewLimitKey(LimitDeviceToken, remoteA), t0.Add(10*time.Second)); locked {
		t.Error("the device-token scope of the same IP is locked")
	}
	if _, locked := l.Check(NewLimitKey(LimitSharedSecret, cliLoopback), t0.Add(10*time.Second)); locked {
		t.Error("loopback CLI is locked")
	}
	// A failure during lockout does not extend it.
	if d, _ := l.Fail(k, t0.Add(100*time.Second)); d != 209*time.Second {
		t.Errorf("lockout extended: retry %v", d)
	}
	// After the lockout the bucket starts afresh.
	if _, locked := l.Check(k, t0.Add(309*time.Second)); locked {
		t.Error("still locked after 300s")
	}
	if _, locked := l.Fail(k, t0.Add(310*time.Second)); locked {
		t.Error("one failure after the lockout locked again")
	}
}

func TestLimiterA15BogusDeviceTokenStillCounted(t *testing.T) {
	// The limiter has no "device token present" switch: the gateway passes
	// the shared-secret key for every wrong shared token, whatever else the
	// connect carried. Failures in the device-token scope never unlock it.
	l := NewLimiter(DefaultLimits())
	shared := NewLimitKey(LimitSharedSecret, remoteA)
	device := NewLimitKey(LimitDeviceToken, remoteA)
	for i := 0; i < 10; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		l.Fail(shared, now)
		l.Fail(device, now)
	}
	if _, locked := l.Check(shared, t0.Add(11*time.Second)); !locked {
		t.Fatal("shared-secret scope not locked")
	}
	l.Succeed(device)
	if _, locked := l.Check(shared, t0.Add(12*time.Second)); !locked {
		t.Fatal("device-token success unlocked the shared-secret scope")
	}
}

func TestLimiterA16SameHostProxy(t *testing.T) {
	l := NewLimiter(DefaultLimits())
	k := NewLimitKey(LimitSharedSecret, sameHostProx)
	failN(l, k, t0, 5)
	l.Succeed(k) // a legitimate proxied client logs in: the shared bucket keeps counting
	if _, locked := failN(l, k, t0.Add(10*time.Second), 5); !locked {
		t.Fatal("proxied-loopback bucket reset by a success or exempt")
	}
	// A different proxied client (other source port) shares the bucket.
	other := NewLimitKey(LimitSharedSecret, Arrival{Path: PathLoopback,
		Remote: netip.MustParseAddrPort("127.0.0.1:55555"), Forwarded: true})
	if _, locked := l.Check(other, t0.Add(20*time.Second)); !locked {
		t.Fatal("other proxied client not in the locked bucket")
	}
	if _, locked := l.Check(NewLimitKey(LimitSharedSecret, cliLoopback), t0.Add(20*time.Second)); locked {
		t.Fatal("direct loopback CLI locked by the proxy bucket")
	}
}

func TestLimiterA17MissingCredentialsNotCounted(t *testing.T) {
	// The contract: a connect with no credential calls Check only.
	l := NewLimiter(DefaultLimits())
	k := NewLimitKey(LimitSharedSecret, remoteA)
	for i := 0; i < 50; i++ {
		if _, locked := l.Check(k, t0.Add(time.Duration(i)*time.Second)); locked {
			t.Fatal("Check alone locked the key")
		}
	}
	if l.Len() != 0 {
		t.Fatalf("Check created %d entries", l.Len())
	}
}

func TestLimiterA18LockoutNotBypassedBySuccess(t *testing.T) {
	l := NewLimiter(DefaultLimits())
	k := NewLimitKey(LimitSharedSecret, remoteA)
	failN(l, k, t0, 10)
	// The correct token arrives: the gateway calls Check first and refuses.
	if _, locked := l.Check(k, t0.Add(20*time.Second)); !locked {
		t.Fatal("not locked")
	}
	// Even if a buggy caller records the success, the lockout stands.
	l.Succeed(k)
	if _, locked := l.Check(k, t0.Add(21*time.Second)); !locked {
		t.Fatal("Succeed lifted an active lockout")
	}
}

func TestLimiterSuccessResets(t *testing.T) {
	l := NewLimiter(DefaultLimits())
	k := NewLimitKey(LimitSharedSecret, remoteA)
	failN(l, k, t0, 9)
	l.Succeed(k)
	if l.Len() != 0 {
		t.Fatalf("Len = %d after success", l.Len())
	}
	if _, locked := failN(l, k, t0.Add(10*time.Second), 9); locked {
		t.Fatal("failures before the success still counted")
	}
}

func TestLimiterF4ClawJacked(t *testing.T) {
	l := NewLimiter(DefaultLimits())
	evil := NewLimitKey(LimitSharedSecret, evilPage)
	if _, locked := failN(l, evil, t0, 10); !locked {
		t.Fatal("browser page on loopback not limited")
	}
	if _, locked := l.Check(evil, t0.Add(11*time.Second)); !locked {
		t.Fatal("11th try from the evil page allowed")
	}
	if _, locked := l.Check(NewLimitKey(LimitSharedSecret, otherPage), t0.Add(11*time.Second)); locked {
		t.Error("another origin shares the evil page's bucket")
	}
	cli := NewLimitKey(LimitSharedSecret, cliLoopback)
	if _, locked := failN(l, cli, t0, 50); locked {
		t.Error("loopback CLI is not exempt")
	}
	if _, locked := l.Check(cli, t0.Add(60*time.Second)); locked {
		t.Error("loopback CLI locked")
	}
}

func TestLimiterSlidingWindow(t *testing.T) {
	l := NewLimiter(DefaultLimits())
	k := NewLimitKey(LimitSharedSecret, remoteA)
	// 9 failures, then a 60 s gap: the old ones fall out of the window.
	failN(l, k, t0, 9)
	if _, locked := l.Fail(k, t0.Add(8*time.Second+60*time.Second)); locked {
		t.Fatal("failures older than the window counted")
	}
	// Within one window, the 10th failure locks.
	l2 := NewLimiter(DefaultLimits())
	for i := 0; i < 10; i++ {
		_, locked := l2.Fail(k, t0.Add(time.Duration(i)*6*time.Second)) // spans 54 s
		if locked != (i == 9) {
			t.Fatalf("failure %d locked=%v", i+1, locked)
		}
	}
}

func TestLimiterNoLoopbackExemption(t *testing.T) {
	l := NewLimiter(Limits{NoLoopbackExemption: true})
	k := NewLimitKey(LimitSharedSecret, cliLoopback)
	if _, locked := failN(l, k, t0, 10); !locked {
		t.Fatal("loopback exempt despite NoLoopbackExemption")
	}
}

func TestLimiterDefaults(t *testing.T) {
	got := NewLimiter(Limits{Window: -1}).Limits()
	if got != DefaultLimits() {
		t.Fatalf("Limits() = %+v", got)
	}
	d := DefaultLimits()
	if d.MaxFailures != 10 || d.Window != time.Minute || d.Lockout != 5*time.Minute || d.MaxEntries != 10_000 {
		t.Fatalf("DefaultLimits = %+v", d)
	}
	custom := Limits{MaxFailures: 3, Window: time.Second, Lockout: time.Hour, MaxEntries: 5}
	if NewLimiter(custom).Limits() != custom {
		t.Fatal("custom limits not kept")
	}
}

// ipKey returns a shared-secret key for 10.x.y.z built from i.
func ipKey(i int) LimitKey {
	addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return NewLimitKey(LimitSharedSecret, Arrival{Path: PathTLS, Remote: netip.AddrPortFrom(addr, 1)})
}

func TestLimiterG10Bounded(t *testing.T) {
	l := NewLimiter(Limits{MaxEntries: 100})
	for i := 0; i < 10_000; i++ {
		l.Fail(ipKey(i), t0)
		if l.Len() > 100 {
			t.Fatalf("Len = %d > cap after %d keys", l.Len(), i+1)
		}
	}
	// Rotating origins from a loopback page are bounded too.
	l2 := NewLimiter(Limits{MaxEntries: 50})
	for i := 0; i < 1000; i++ {
		a := Arrival{Path: PathLoopback, Remote: netip.MustParseAddrPort("127.0.0.1:1"), Origin: fmt.Sprintf("https://%d.evil", i)}
		l2.Fail(NewLimitKey(LimitSharedSecret, a), t0)
	}
	if l2.Len() != 50 {
		t.Fatalf("Len = %d, want 50", l2.Len())
	}
}

func TestLimiterPrunesExpiredFirst(t *testing.T) {
	l := NewLimiter(Limits{MaxEntries: 4})
	old := ipKey(1)
	locked := ipKey(2)
	failN(l, locked, t0, 10) // locked until t0+9s+300s
	l.Fail(old, t0)          // expires at t0+60s
	l.Fail(ipKey(3), t0.Add(100*time.Second))
	l.Fail(ipKey(4), t0.Add(100*time.Second))
	// Full. A new key at t0+120s: old has expired and goes first; the
	// lockout stays.
	l.Fail(ipKey(5), t0.Add(120*time.Second))
	if l.Len() != 4 {
		t.Fatalf("Len = %d", l.Len())
	}
	if _, isLocked := l.Check(locked, t0.Add(121*time.Second)); !isLocked {
		t.Fatal("locked bucket evicted while an expired one was kept")
	}
	// Prune at a time when everything has expired.
	l.Prune(t0.Add(time.Hour))
	if l.Len() != 0 {
		t.Fatalf("Len after Prune = %d", l.Len())
	}
}

func TestLimiterEvictsLeastRecentlyActive(t *testing.T) {
	l := NewLimiter(Limits{MaxEntries: 3})
	target := ipKey(1)
	failN(l, target, t0, 10) // locked
	l.Fail(ipKey(2), t0.Add(20*time.Second))
	l.Fail(ipKey(3), t0.Add(21*time.Second))
	// The attacker keeps knocking: Check refreshes the locked bucket.
	l.Check(target, t0.Add(22*time.Second))
	l.Fail(ipKey(4), t0.Add(23*time.Second)) // evicts ipKey(2), the least recently active
	if _, locked := l.Check(target, t0.Add(24*time.Second)); !locked {
		t.Fatal("recently active locked bucket was evicted")
	}
	l.mu.Lock()
	_, has2 := l.entries[ipKey(2)]
	l.mu.Unlock()
	if has2 {
		t.Fatal("least recently active bucket not evicted")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(Limits{MaxEntries: 64})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := ipKey(g*1000 + i%100)
				now := t0.Add(time.Duration(i) * time.Millisecond)
				l.Check(k, now)
				l.Fail(k, now)
				if i%7 == 0 {
					l.Succeed(k)
				}
				if i%500 == 0 {
					l.Prune(now)
				}
				_ = l.Len()
			}
		}(g)
	}
	wg.Wait()
	if l.Len() > 64 {
		t.Fatalf("Len = %d", l.Len())
	}
}

func TestLimiterEvictionPrefersUnlocked(t *testing.T) {
	l := NewLimiter(Limits{MaxEntries: 3})
	target := ipKey(1)
	failN(l, target, t0, 10) // locked, least recently active
	l.Fail(ipKey(2), t0.Add(10*time.Second))
	l.Fail(ipKey(3), t0.Add(11*time.Second))
	l.Fail(ipKey(4), t0.Add(12*time.Second)) // must evict ipKey(2), not the lockout
	if _, locked := l.Check(target, t0.Add(13*time.Second)); !locked {
		t.Fatal("lockout evicted while unlocked buckets remained")
	}

	// When every bucket is locked, the least recently active one goes.
	all := NewLimiter(Limits{MaxEntries: 2, MaxFailures: 1})
	all.Fail(ipKey(1), t0)
	all.Fail(ipKey(2), t0.Add(time.Second))
	all.Fail(ipKey(3), t0.Add(2*time.Second))
	if all.Len() != 2 {
		t.Fatalf("Len = %d", all.Len())
	}
	if _, locked := all.Check(ipKey(1), t0.Add(3*time.Second)); locked {
		t.Fatal("oldest lockout not the one evicted")
	}
}
