package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// OpenAIConfig configures an OpenAI-compatible backend.
type OpenAIConfig struct {
	// BaseURL is the API root, e.g. "http://127.0.0.1:11434/v1" (Ollama),
	// "http://127.0.0.1:8080/v1" (llama.cpp), "https://api.openai.com/v1".
	BaseURL string
	Model   string
	// APIKey is sent as "Authorization: Bearer ..."; empty sends none
	// (local servers usually need none).
	APIKey string
	// MaxTokens, when > 0, bounds the reply ("max_tokens").
	MaxTokens int
	// Temperature, when set, is sent as is.
	Temperature *float64
	// HTTPClient overrides the client; its CheckRedirect is replaced so
	// redirects are never followed.
	HTTPClient *http.Client
	// IdleTimeout bounds the silence between two streamed chunks (and
	// before the first); zero means 120 s.
	IdleTimeout time.Duration
}

// OpenAI streams chat completions from an OpenAI-compatible server.
type OpenAI struct {
	cfg      OpenAIConfig
	endpoint string
	client   *http.Client
}

var _ Backend = (*OpenAI)(nil)

// maxSSELine bounds one server-sent-events line.
const maxSSELine = 1 << 20

// NewOpenAI checks cfg and returns the backend.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent.NewOpenAI: baseUrl %q must be an http(s) URL such as http://127.0.0.1:11434/v1", cfg.BaseURL)
	}
	if u.User != nil {
		return nil, errors.New("agent.NewOpenAI: baseUrl must not contain credentials; use apiKeyFile or apiKeyEnv")
	}
	if cfg.Model == "" {
		return nil, errors.New("agent.NewOpenAI: model is required")
	}
	if strings.ContainsAny(cfg.APIKey, "\r\n") {
		return nil, errors.New("agent.NewOpenAI: API key contains a line break")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &OpenAI{cfg: cfg, endpoint: u.String() + "/chat/completions", client: hc}, nil
}

// Describe says which server and model, never the key.
func (o *OpenAI) Describe() string {
	return "openai-compatible " + strings.TrimSuffix(o.endpoint, "/chat/completions") + " model=" + o.cfg.Model
}

type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []Message      `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float64       `json:"temperature,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	Error *apiError `json:"error"`
}

type apiError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    any    `json:"code"`
}

// Stream posts the conversation and reads the event stream.
func (o *OpenAI) Stream(ctx context.Context, req Request, emit func(string)) (Result, error) {
	body, err := json.Marshal(chatRequest{
		Model: o.cfg.Model, Messages: req.Messages, Stream: true,
		StreamOptions: &streamOptions{IncludeUsage: true},
		MaxTokens:     o.cfg.MaxTokens, Temperature: o.cfg.Temperature,
	})
	if err != nil {
		return Result{}, fmt.Errorf("agent: encode request: %w", err)
	}
	// idle cancels the request when the server goes quiet for too long.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(o.cfg.IdleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()

	hr, err := http.NewRequestWithContext(rctx, http.MethodPost, o.endpoint, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("agent: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "text/event-stream")
	if o.cfg.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	resp, err := o.client.Do(hr)
	if err != nil {
		return Result{}, o.transportError(ctx, rctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return Result{}, readHTTPError(resp)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		// Some servers ignore "stream" and answer with one JSON object.
		return o.readWhole(resp.Body, emit)
	}

	var res Result
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var data strings.Builder
	flush := func() (done bool, err error) {
		if data.Len() == 0 {
			return false, nil
		}
		payload := data.String()
		data.Reset()
		if strings.TrimSpace(payload) == "[DONE]" {
			return true, nil
		}
		var ch chatChunk
		if err := json.Unmarshal([]byte(payload), &ch); err != nil {
			return false, fmt.Errorf("agent: backend sent an unreadable event: %w", err)
		}
		if ch.Error != nil {
			return false, &HTTPError{Status: resp.StatusCode, Type: errType(ch.Error), Message: trimMessage(ch.Error.Message)}
		}
		if ch.Usage != nil {
			res.Usage = &Usage{Input: ch.Usage.PromptTokens, Output: ch.Usage.CompletionTokens, Total: ch.Usage.TotalTokens}
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				emit(*c.Delta.Content)
			}
			if c.Delta.Refusal != nil && *c.Delta.Refusal != "" {
				return false, &HTTPError{Status: resp.StatusCode, Type: "refusal", Message: trimMessage(*c.Delta.Refusal)}
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				res.StopReason = *c.FinishReason
			}
		}
		return false, nil
	}
	for sc.Scan() {
		idle.Reset(o.cfg.IdleTimeout)
		line := sc.Text()
		switch {
		case line == "":
			done, err := flush()
			if err != nil {
				return res, err
			}
			if done {
				return finish(res), nil
			}
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
		// Comments (":"), "event:", "id:" and "retry:" lines are ignored.
	}
	if err := sc.Err(); err != nil {
		return res, o.transportError(ctx, rctx, err)
	}
	if ctx.Err() != nil {
		return res, cause(ctx)
	}
	// The stream ended without [DONE]: take what is buffered.
	if _, err := flush(); err != nil {
		return res, err
	}
	if res.StopReason == "" {
		return res, errors.New("agent: backend closed the stream before the reply was complete")
	}
	return res, nil
}

func finish(r Result) Result {
	if r.StopReason == "" {
		r.StopReason = "stop"
	}
	return r
}

var errIdle = errors.New("agent: backend went silent")

// transportError says why the request failed without leaking the URL's
// query or the key.
func (o *OpenAI) transportError(ctx, rctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return cause(ctx)
	case errors.Is(context.Cause(rctx), errIdle):
		return fmt.Errorf("%w: no data from the backend for %s", ErrTimeout, o.cfg.IdleTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("agent: backend unreachable (%s): %v", strings.TrimSuffix(o.endpoint, "/chat/completions"), err)
}

// readWhole handles a non-streamed JSON answer.
func (o *OpenAI) readWhole(r io.Reader, emit func(string)) (Result, error) {
	var whole struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&whole); err != nil {
		return Result{}, fmt.Errorf("agent: backend sent an unreadable answer: %w", err)
	}
	var res Result
	for _, c := range whole.Choices {
		if c.Message.Content != "" {
			emit(c.Message.Content)
		}
		res.StopReason = c.FinishReason
	}
	if whole.Usage != nil {
		res.Usage = &Usage{Input: whole.Usage.PromptTokens, Output: whole.Usage.CompletionTokens, Total: whole.Usage.TotalTokens}
	}
	return finish(res), nil
}

// readHTTPError reads a bounded error body.
func readHTTPError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	he := &HTTPError{Status: resp.StatusCode}
	if json.Unmarshal(raw, &env) == nil && len(env.Error) > 0 {
		var ae apiError
		if json.Unmarshal(env.Error, &ae) == nil && ae.Message != "" {
			he.Type, he.Message = errType(&ae), trimMessage(ae.Message)
			return he
		}
		var s string
		if json.Unmarshal(env.Error, &s) == nil {
			he.Message = trimMessage(s)
			return he
		}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		he.Message = trimMessage(string(raw))
	}
	return he
}

func errType(e *apiError) string {
	if s, ok := e.Code.(string); ok && s != "" {
		return e.Type + " " + s
	}
	return e.Type
}

// trimMessage keeps an upstream message short, on one line and valid UTF-8.
func trimMessage(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 300
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}
