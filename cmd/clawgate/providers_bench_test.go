package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/discord"
	discordfake "github.com/clawgate/clawgate/providers/discord/fake"
	"github.com/clawgate/clawgate/providers/slack"
	slackfake "github.com/clawgate/clawgate/providers/slack/fake"
	"github.com/clawgate/clawgate/providers/telegram"
	telegramfake "github.com/clawgate/clawgate/providers/telegram/fake"
)

const benchGatewayToken = "bench-token-0123456789abcdef0123456789"

// benchChannel is one provider wired to its fake, inside an in-process
// gateway, with an operator connected over WebSocket.
type benchChannel struct {
	name     string
	to       string        // a destination the policy allows
	inject   func(i int)   // makes the service deliver message i
	sent     func() int    // messages the service accepted
	inbound  atomic.Int64  // session.message events the operator saw
	kick     chan struct{} // signalled on each event
	dial     func() *client.Client
	closeAll []func()
}

func newBenchChannel(b *testing.B, name string) *benchChannel {
	b.Helper()
	bc := &benchChannel{name: name, kick: make(chan struct{}, 1)}
	var p providers.Provider
	var sender string
	switch name {
	case "telegram":
		f := telegramfake.New(e2eTelegramToken)
		bc.closeAll = append(bc.closeAll, f.Close)
		tp, err := telegram.New(telegram.Config{Token: e2eTelegramToken, APIURL: f.URL, PollTimeout: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		p, sender, bc.to = tp, f.SenderID(), f.SenderID()
		bc.inject = func(i int) { f.Inject("bench " + strconv.Itoa(i)) }
		bc.sent = func() int { return len(f.Sent()) }
	case "slack":
		f := slackfake.New(e2eSlackBot, e2eSlackApp)
		bc.closeAll = append(bc.closeAll, f.Close)
		sp, err := slack.New(slack.Config{BotToken: e2eSlackBot, AppToken: e2eSlackApp, APIURL: f.APIURL})
		if err != nil {
			b.Fatal(err)
		}
		p, sender, bc.to = sp, f.SenderID(), slackfake.DMChat
		bc.inject = func(i int) { f.Inject("bench " + strconv.Itoa(i)) }
		bc.sent = func() int { return len(f.Sent()) }
	case "discord":
		f := discordfake.New(e2eDiscordToken)
		bc.closeAll = append(bc.closeAll, f.Close)
		dp, err := discord.New(discord.Config{Token: e2eDiscordToken, APIURL: f.URL, OpenTimeout: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		p, sender, bc.to = dp, f.SenderID(), discordfake.DMChannel
		bc.inject = func(i int) { f.Inject("bench " + strconv.Itoa(i)) }
		bc.sent = func() int { return len(f.Sent()) }
	}
	sup, err := providers.NewSupervisor(providers.Options{}, providers.Account{Provider: p,
		Policy: providers.Policy{AllowFrom: []string{sender}, AllowTo: []string{"*"}}})
	if err != nil {
		b.Fatal(err)
	}
	secret, _ := authn.NewSharedSecret(benchGatewayToken)
	srv, err := gateway.New(gateway.Options{Token: secret, Providers: sup, StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = sup.Run(ctx) })
	wg.Go(func() { _ = srv.Serve(ctx, gateway.Listener{Listener: ln, Path: authn.PathLoopback}) })
	url := "ws://" + ln.Addr().String()
	var clients []*client.Client
	bc.dial = func() *client.Client {
		id, _ := client.NewIdentity()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		c, err := client.Dial(dctx, client.Options{URL: url, Token: benchGatewayToken, Identity: id,
			Scopes: []string{protocol.ScopeRead, protocol.ScopeWrite},
			OnEvent: func(e client.Event) {
				if e.Name == "session.message" {
					bc.inbound.Add(1)
					select {
					case bc.kick <- struct{}{}:
					default:
					}
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	b.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
		cancel()
		wg.Wait()
		for _, f := range bc.closeAll {
			f()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !sup.Statuses()[0].Connected() {
		if time.Now().After(deadline) {
			b.Fatalf("%s not connected", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return bc
}

// BenchmarkChannelInbound: messages per second from the fake service
// through the provider, the Supervisor's policy and the gateway to a
// WebSocket operator's session.message event.
func BenchmarkChannelInbound(b *testing.B) {
	for _, name := range []string{"telegram", "slack", "discord"} {
		b.Run(name, func(b *testing.B) {
			bc := newBenchChannel(b, name)
			bc.dial()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				bc.inject(i)
			}
			deadline := time.After(60 * time.Second)
			for bc.inbound.Load() < int64(b.N) {
				select {
				case <-bc.kick:
				case <-time.After(5 * time.Millisecond):
				case <-deadline:
					b.Fatalf("%d of %d messages arrived", bc.inbound.Load(), b.N)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkChannelSend: operator send round trips per second (request →
// gateway → dedupe → provider → the fake service's HTTP API → response),
// one caller at a time and 16 at once.
func BenchmarkChannelSend(b *testing.B) {
	for _, name := range []string{"telegram", "slack", "discord"} {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", name, callers), func(b *testing.B) {
				bc := newBenchChannel(b, name)
				cs := make([]*client.Client, callers)
				for i := range cs {
					cs[i] = bc.dial()
				}
				var next atomic.Int64
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for _, c := range cs {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
							_, err := c.Call(ctx, "send", map[string]any{"to": bc.to, "message": "bench", "idempotencyKey": "bench-" + strconv.FormatInt(i, 10)})
							cancel()
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sends/s")
				if got := bc.sent(); got != b.N {
					b.Errorf("service saw %d sends, want %d", got, b.N)
				}
			})
		}
	}
}
