package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/discord"
	"github.com/clawgate/clawgate/providers/slack"
	"github.com/clawgate/clawgate/providers/telegram"
)

// channels owns the messaging providers configured in the "channels"
// section: the explicit list of concrete providers lives here, and the
// gateway sees only providers.Hub.
type channels struct {
	sup *providers.Supervisor // nil when no account is configured
	log *slog.Logger
	wa  *whatsappLogins // QR login of the WhatsApp accounts (whatsapp.go)
}

// newChannels builds every configured account. Secrets are read from their
// files (refused when group or others can read them) or environment
// variables, and never logged. Any mistake is a startup error.
func newChannels(cfg config.Channels, stateDir string, e env, log *slog.Logger) (_ *channels, err error) {
	c := &channels{log: log.With("component", "channels"), wa: &whatsappLogins{}}
	defer func() {
		if err != nil {
			c.close() // release the WhatsApp session locks taken so far
		}
	}()
	if cfg.Empty() {
		return c, nil
	}
	var accounts []providers.Account
	for i, a := range cfg.Telegram {
		acct, err := telegramAccount(a, e, c.log)
		if err != nil {
			return nil, fmt.Errorf("config: channels.telegram[%d]: %w", i, err)
		}
		accounts = append(accounts, acct)
	}
	for i, a := range cfg.Slack {
		acct, err := slackAccount(a, e, c.log)
		if err != nil {
			return nil, fmt.Errorf("config: channels.slack[%d]: %w", i, err)
		}
		accounts = append(accounts, acct)
	}
	for i, a := range cfg.Discord {
		acct, err := discordAccount(a, e, c.log)
		if err != nil {
			return nil, fmt.Errorf("config: channels.discord[%d]: %w", i, err)
		}
		accounts = append(accounts, acct)
	}
	for i, a := range cfg.WhatsApp {
		acct, p, err := whatsappAccount(a, stateDir, e, c.log)
		if err != nil {
			return nil, fmt.Errorf("config: channels.whatsapp[%d]: %w", i, err)
		}
		c.wa.add(acct.ID, p)
		accounts = append(accounts, acct)
	}
	sup, err := providers.NewSupervisor(providers.Options{Logger: c.log, Log: providers.NewMemoryLog(0, 0)}, accounts...)
	if err != nil {
		return nil, fmt.Errorf("config: channels: %w", err)
	}
	c.sup = sup
	return c, nil
}

// hub is what the gateway gets: nil (not a typed nil) when there are no
// channels.
func (c *channels) hub() providers.Hub {
	if c.sup == nil {
		return nil
	}
	if len(c.wa.ids) > 0 {
		return loginHub{c.sup, c.wa}
	}
	return c.sup
}

// close releases what the providers hold beyond their runs (the WhatsApp
// session locks). Call it after stop.
func (c *channels) close() {
	c.wa.close()
}

// start runs the Supervisor until ctx ends or stop is called; stop
// waits for every provider to finish.
func (c *channels) start(ctx context.Context) (stop func()) {
	if c.sup == nil {
		return func() {}
	}
	c.log.Info("starting channels", "channels", c.sup.Channels())
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.sup.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// readSecret resolves one secret. It returns where it came from ("file"
// or "env") for status, never the value.
func readSecret(s config.Secret, e env, what string) (value, source string, err error) {
	switch {
	case s.File != "" && s.Env != "":
		return "", "", fmt.Errorf("%s: set file or env, not both", what)
	case s.File != "":
		if !filepath.IsAbs(s.File) {
			return "", "", fmt.Errorf("%s: file %q must be an absolute path", what, s.File)
		}
		v, err := config.ReadSecret(s.File)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", what, err)
		}
		if v == "" {
			return "", "", fmt.Errorf("%s: %s is empty", what, s.File)
		}
		return v, "file", nil
	case s.Env != "":
		v := e.getenv(s.Env)
		if v == "" {
			return "", "", fmt.Errorf("%s: environment variable %s is empty or unset", what, s.Env)
		}
		return v, "env", nil
	}
	return "", "", fmt.Errorf("%s: name a file (mode 0600) or an environment variable holding it", what)
}

func policy(p config.AccountPolicy, roles []string) providers.Policy {
	return providers.Policy{AllowFrom: p.AllowFrom, AllowRoles: roles, Owners: p.Owners, AllowTo: p.AllowTo,
		DMPairing: p.DMPairing, MaxTextBytes: p.MaxTextBytes}
}

func telegramAccount(a config.TelegramAccount, e env, log *slog.Logger) (providers.Account, error) {
	token, source, err := readSecret(a.Token, e, "token")
	if err != nil {
		return providers.Account{}, err
	}
	cfg := telegram.Config{Token: token, APIURL: a.APIURL, Mode: a.Mode,
		PollTimeout: time.Duration(a.PollTimeoutSeconds) * time.Second, Logger: log,
		Webhook: telegram.WebhookConfig{Listen: a.Webhook.Listen, Path: a.Webhook.Path, PublicURL: a.Webhook.PublicURL}}
	if a.Mode == telegram.ModeWebhook && a.Webhook.Secret.Set() {
		cfg.Webhook.Secret, _, err = readSecret(a.Webhook.Secret, e, "webhook.secret")
		if err != nil {
			return providers.Account{}, err
		}
	}
	p, err := telegram.New(cfg)
	if err != nil {
		return providers.Account{}, err
	}
	return providers.Account{ID: a.ID, Label: a.Label, Provider: p, Policy: policy(a.AccountPolicy, nil), TokenSource: source}, nil
}

func slackAccount(a config.SlackAccount, e env, log *slog.Logger) (providers.Account, error) {
	bot, source, err := readSecret(a.BotToken, e, "botToken")
	if err != nil {
		return providers.Account{}, err
	}
	app, _, err := readSecret(a.AppToken, e, "appToken")
	if err != nil {
		return providers.Account{}, err
	}
	p, err := slack.New(slack.Config{BotToken: bot, AppToken: app, APIURL: a.APIURL, Logger: log})
	if err != nil {
		return providers.Account{}, err
	}
	return providers.Account{ID: a.ID, Label: a.Label, Provider: p, Policy: policy(a.AccountPolicy, nil), TokenSource: source}, nil
}

func discordAccount(a config.DiscordAccount, e env, log *slog.Logger) (providers.Account, error) {
	token, source, err := readSecret(a.Token, e, "token")
	if err != nil {
		return providers.Account{}, err
	}
	if a.OpenTimeoutSeconds < 0 {
		return providers.Account{}, errors.New("openTimeoutSeconds must not be negative")
	}
	p, err := discord.New(discord.Config{Token: token, APIURL: a.APIURL,
		OpenTimeout: time.Duration(a.OpenTimeoutSeconds) * time.Second, Logger: log})
	if err != nil {
		return providers.Account{}, err
	}
	return providers.Account{ID: a.ID, Label: a.Label, Provider: p, Policy: policy(a.AccountPolicy, a.AllowRoles), TokenSource: source}, nil
}
