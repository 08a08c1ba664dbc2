package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/clawgate/clawgate/agent"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/store"
	"github.com/clawgate/clawgate/webchat"
)

// agentWiring builds the agent backend named by the config's "agent"
// section, the chat options around it and the WebChat page.
func agentWiring(cfg config.Agent, e env, sessions store.SessionStore, cfgPath string, log *slog.Logger) (gateway.AgentOptions, http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return gateway.AgentOptions{}, nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	opts := gateway.AgentOptions{
		Sessions:          sessions,
		SystemPrompt:      cfg.SystemPrompt,
		RunTimeout:        time.Duration(cfg.TimeoutSeconds) * time.Second,
		HistoryKeep:       cfg.History.MaxMessages,
		ContextMessages:   cfg.History.ContextMessages,
		Retention:         time.Duration(cfg.History.RetentionDays) * 24 * time.Hour,
		NotConfiguredHint: "config file: " + cfgPath,
	}
	b, err := agentBackend(cfg, e)
	if err != nil {
		return opts, nil, fmt.Errorf("%s: agent: %w", cfgPath, err)
	}
	if b != nil {
		opts.Backend = b
		desc := cfg.Backend
		if d, ok := b.(agent.Describer); ok {
			desc = d.Describe()
		}
		log.Info("agent backend configured", "backend", desc)
	} else {
		log.Info("no agent backend configured; agent and chat.send answer UNAVAILABLE until an \"agent\" section is added", "config", cfgPath)
	}
	return opts, webchat.Handler(), nil
}

func agentBackend(cfg config.Agent, e env) (agent.Backend, error) {
	switch cfg.Backend {
	case "openai":
		o := cfg.OpenAI
		key := ""
		switch {
		case o.APIKeyFile != "":
			k, err := config.ReadSecret(o.APIKeyFile)
			if err != nil {
				return nil, err
			}
			key = k
		case o.APIKeyEnv != "":
			key = strings.TrimSpace(e.getenv(o.APIKeyEnv))
			if key == "" {
				return nil, fmt.Errorf("apiKeyEnv %s is empty or unset", o.APIKeyEnv)
			}
		}
		return agent.NewOpenAI(agent.OpenAIConfig{BaseURL: o.BaseURL, Model: o.Model, APIKey: key,
			MaxTokens: o.MaxTokens, Temperature: o.Temperature})
	case "exec":
		x := cfg.Exec
		var hidden []string
		if cfg.OpenAI != nil && cfg.OpenAI.APIKeyEnv != "" {
			hidden = append(hidden, cfg.OpenAI.APIKeyEnv)
		}
		return agent.NewExec(agent.ExecConfig{Command: x.Command, Dir: x.Dir, Env: x.Env, Input: x.Input,
			Timeout: time.Duration(cfg.TimeoutSeconds) * time.Second, HiddenEnv: hidden})
	}
	return nil, nil
}
