package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// sseServer is a loopback OpenAI-compatible endpoint. handle decides the
// answer per request.
func sseServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, req chatRequest)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var req chatRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		handle(w, r, req)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeChunks(w http.ResponseWriter, pieces []string, delay time.Duration) {
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for _, p := range pieces {
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": p}}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
		time.Sleep(delay)
	}
	fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n")
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}

func collect(t *testing.T, b Backend, ctx context.Context, req Request) (string, Result, error) {
	t.Helper()
	var sb strings.Builder
	res, err := b.Stream(ctx, req, func(s string) { sb.WriteString(s) })
	return sb.String(), res, err
}

func TestOpenAIStream(t *testing.T) {
	var gotAuth string
	var gotReq chatRequest
	srv := sseServer(t, func(w http.ResponseWriter, r *http.Request, req chatRequest) {
		gotAuth, gotReq = r.Header.Get("Authorization"), req
		writeChunks(w, []string{"Hel", "lo ", "wörld"}, 0)
	})
	b, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1/", Model: "tiny", APIKey: "sk-test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	text, res, err := collect(t, b, context.Background(), Request{Messages: []Message{
		{Role: RoleSystem, Content: "be brief"}, {Role: RoleUser, Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	if text != "Hello wörld" || res.StopReason != "stop" {
		t.Fatalf("text %q stop %q", text, res.StopReason)
	}
	if res.Usage == nil || res.Usage.Total != 10 || res.Usage.Input != 7 {
		t.Fatalf("usage %+v", res.Usage)
	}
	if gotAuth != "Bearer sk-test-secret" || gotReq.Model != "tiny" || !gotReq.Stream || len(gotReq.Messages) != 2 {
		t.Fatalf("request auth=%q %+v", gotAuth, gotReq)
	}
	if strings.Contains(b.Describe(), "sk-") {
		t.Fatalf("Describe leaks the key: %s", b.Describe())
	}
}

func TestOpenAIErrors(t *testing.T) {
	cases := []struct {
		name     string
		handle   func(w http.ResponseWriter)
		wantKind string
		wantMsg  string
	}{
		{"rate limit", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
		}, "rate_limit", "HTTP 429: slow down"},
		{"context length", func(w http.ResponseWriter) {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"message":"This model's maximum context length is 4096 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}`)
		}, "context_length", "maximum context length"},
		{"server error plain text", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(500)
			io.WriteString(w, "model\n not   loaded")
		}, "unknown", "HTTP 500: model not loaded"},
		{"error event mid-stream", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n")
			io.WriteString(w, "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n")
		}, "unknown", "overloaded"},
		{"truncated stream", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n")
		}, "unknown", "before the reply was complete"},
		{"redirect not followed", func(w http.ResponseWriter) {
			w.Header().Set("Location", "http://127.0.0.1:1/steal")
			w.WriteHeader(307)
		}, "unknown", "HTTP 307"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := sseServer(t, func(w http.ResponseWriter, _ *http.Request, _ chatRequest) { c.handle(w) })
			b, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "m", APIKey: "sk-secret-value"})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = collect(t, b, context.Background(), Request{Messages: []Message{{Role: RoleUser, Content: "x"}}})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q does not contain %q", err, c.wantMsg)
			}
			if strings.Contains(err.Error(), "sk-secret") {
				t.Errorf("error leaks the key: %v", err)
			}
			if k := Kind(err); k != c.wantKind {
				t.Errorf("Kind = %q, want %q", k, c.wantKind)
			}
		})
	}
}

func TestOpenAIAbortAndIdle(t *testing.T) {
	release := make(chan struct{})
	srv := sseServer(t, func(w http.ResponseWriter, r *http.Request, _ chatRequest) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	b, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "m"})

	ctx, cancel := context.WithCancelCause(context.Background())
	got := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		_, err := b.Stream(ctx, Request{}, func(s string) { got <- s })
		done <- err
	}()
	if s := <-got; s != "first" {
		t.Fatalf("first chunk %q", s)
	}
	cancel(ErrAborted)
	select {
	case err := <-done:
		if !errors.Is(err, ErrAborted) {
			t.Fatalf("abort error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stream did not return after abort")
	}

	idle, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "m", IdleTimeout: 100 * time.Millisecond})
	_, _, err := collect(t, idle, context.Background(), Request{})
	if !errors.Is(err, ErrTimeout) || Kind(err) != "timeout" {
		t.Fatalf("idle error %v (kind %s)", err, Kind(err))
	}
}

func TestOpenAIConfigChecks(t *testing.T) {
	for _, c := range []OpenAIConfig{
		{BaseURL: "", Model: "m"},
		{BaseURL: "ftp://x/v1", Model: "m"},
		{BaseURL: "http://user:pw@127.0.0.1/v1", Model: "m"},
		{BaseURL: "http://127.0.0.1/v1"},
		{BaseURL: "http://127.0.0.1/v1", Model: "m", APIKey: "a\nb"},
	} {
		if _, err := NewOpenAI(c); err == nil {
			t.Errorf("NewOpenAI(%+v) accepted", c)
		}
	}
}

func TestOpenAINonStreamingAnswer(t *testing.T) {
	srv := sseServer(t, func(w http.ResponseWriter, _ *http.Request, _ chatRequest) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":"whole"},"finish_reason":"length"}]}`)
	})
	b, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "m"})
	text, res, err := collect(t, b, context.Background(), Request{})
	if err != nil || text != "whole" || res.StopReason != "length" {
		t.Fatalf("%q %+v %v", text, res, err)
	}
}
