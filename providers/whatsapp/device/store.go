package device

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	waLog "go.mau.fi/whatsmeow/util/log"
	_ "modernc.org/sqlite" // the pure-Go "sqlite" database/sql driver
)

// dbName is the session database inside Config.Dir.
const dbName = "session.db"

// sessionStore is the open session database and its one device.
type sessionStore struct {
	container *sqlstore.Container
	dev       *store.Device
}

// openStore opens (creating it 0600 if needed) the session database with
// foreign keys on, as whatsmeow's schema requires, and loads the device:
// the linked one, or fresh keys when none is linked.
func openStore(ctx context.Context, dir string, log *slog.Logger) (*sessionStore, error) {
	path := filepath.Join(dir, dbName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("whatsapp: open session database: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("whatsapp: restrict session database to 0600: %w", err)
	}
	// WAL with synchronous=NORMAL: a commit is one write, not an fsync, so
	// the first login's 812 prekeys (one statement each) take milliseconds
	// instead of a long run of fsyncs; a power cut can lose the last
	// commits, which Signal's retry receipts recover from.
	//
	// Transactions begin IMMEDIATE: whatsmeow writes from several goroutines
	// (a message's decryption beside a push-name update), and a deferred
	// transaction that reads, then writes after another connection wrote,
	// fails at once with SQLITE_BUSY instead of waiting busy_timeout.
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("whatsapp: open session database: %w", err)
	}
	container := sqlstore.NewWithDB(db, "sqlite", newWALog(log, "store"))
	if err := container.Upgrade(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("whatsapp: prepare session database: %w", err)
	}
	dev, err := container.GetFirstDevice(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("whatsapp: load session: %w", err)
	}
	return &sessionStore{container: container, dev: dev}, nil
}

// fresh replaces an unlinked (or just logged-out) device with new keys, so
// a new link never reuses the identity of a removed one.
func (s *sessionStore) fresh() {
	s.dev = s.container.NewDevice()
}

func (s *sessionStore) close() {
	if s != nil && s.container != nil {
		_ = s.container.Close()
	}
}

// waLogger passes whatsmeow's info, warnings and errors to slog. Its debug
// output is dropped: it dumps raw protocol nodes (keys, QR payloads).
type waLogger struct {
	log *slog.Logger
}

func newWALog(log *slog.Logger, module string) waLog.Logger {
	return waLogger{log: log.With("module", "whatsmeow/"+module)}
}

func (l waLogger) Errorf(msg string, args ...any) { l.log.Error(fmt.Sprintf(msg, args...)) }
func (l waLogger) Warnf(msg string, args ...any)  { l.log.Warn(fmt.Sprintf(msg, args...)) }
func (l waLogger) Infof(msg string, args ...any)  { l.log.Info(fmt.Sprintf(msg, args...)) }
func (l waLogger) Debugf(string, ...any)          {}
func (l waLogger) Sub(module string) waLog.Logger {
	return waLogger{log: l.log.With("sub", module)}
}
