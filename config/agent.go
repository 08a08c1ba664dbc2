package config

import (
	"errors"
	"fmt"
	"strings"
)

// Agent configures the agent backend and chat sessions. Without a backend
// the gateway still serves chat history and WebChat, and answers agent and
// chat.send with UNAVAILABLE.
type Agent struct {
	// Backend is "openai" (an OpenAI-compatible streaming endpoint:
	// Ollama, llama.cpp, vLLM, hosted APIs) or "exec" (a command); empty
	// means none.
	Backend string       `json:"backend,omitempty"`
	OpenAI  *AgentOpenAI `json:"openai,omitempty"`
	Exec    *AgentExec   `json:"exec,omitempty"`
	// SystemPrompt opens every conversation sent to the backend.
	SystemPrompt string `json:"systemPrompt,omitempty"`
	// TimeoutSeconds bounds one run (default 600).
	TimeoutSeconds int          `json:"timeoutSeconds,omitempty"`
	History        AgentHistory `json:"history,omitempty"`
}

// AgentOpenAI is an OpenAI-compatible chat-completions endpoint. The key
// comes from a file (mode 0600) or an environment variable, never from
// this file.
type AgentOpenAI struct {
	BaseURL     string   `json:"baseUrl"`
	Model       string   `json:"model"`
	APIKeyFile  string   `json:"apiKeyFile,omitempty"`
	APIKeyEnv   string   `json:"apiKeyEnv,omitempty"`
	MaxTokens   int      `json:"maxTokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
}

// AgentExec is a command run once per reply, the prompt on stdin.
type AgentExec struct {
	Command []string `json:"command"`
	Dir     string   `json:"dir,omitempty"`
	// Env adds "NAME=value" entries to the command's environment.
	Env []string `json:"env,omitempty"`
	// Input is "text" (the new message, default) or "json" (the whole
	// conversation).
	Input string `json:"input,omitempty"`
}

// AgentHistory bounds the stored chat history.
type AgentHistory struct {
	// MaxMessages is how many messages each session keeps (default 500).
	MaxMessages int `json:"maxMessages,omitempty"`
	// ContextMessages is how many recent messages go to the backend with
	// each run (default 40).
	ContextMessages int `json:"contextMessages,omitempty"`
	// RetentionDays deletes sessions idle for longer (default 30).
	RetentionDays int `json:"retentionDays,omitempty"`
}

// Validate checks the section for the mistakes a strict decode cannot see.
func (a Agent) Validate() error {
	switch a.Backend {
	case "":
		if a.OpenAI != nil || a.Exec != nil {
			return errors.New(`config: agent: set "backend" to "openai" or "exec" to use the section below it`)
		}
	case "openai":
		o := a.OpenAI
		if o == nil || o.BaseURL == "" || o.Model == "" {
			return errors.New(`config: agent.openai needs "baseUrl" and "model"`)
		}
		if o.APIKeyFile != "" && o.APIKeyEnv != "" {
			return errors.New(`config: agent.openai: set "apiKeyFile" or "apiKeyEnv", not both`)
		}
	case "exec":
		if a.Exec == nil || len(a.Exec.Command) == 0 || strings.TrimSpace(a.Exec.Command[0]) == "" {
			return errors.New(`config: agent.exec needs "command" (program and arguments, no shell)`)
		}
	default:
		return fmt.Errorf(`config: agent.backend must be "openai" or "exec", not %q`, a.Backend)
	}
	h := a.History
	if a.TimeoutSeconds < 0 || h.MaxMessages < 0 || h.ContextMessages < 0 || h.RetentionDays < 0 {
		return errors.New("config: agent: timeouts and history limits must not be negative")
	}
	return nil
}
