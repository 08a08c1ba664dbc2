package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// TestTunnelPrints: `clawgate tunnel` prints the ssh command for the
// configured port and refuses hosts ssh would read as options.
func TestTunnelPrints(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	out, err := runCLI(t, state, "tunnel", "me@gw.example")
	if err != nil || strings.TrimSpace(out) != "ssh -N -o ExitOnForwardFailure=yes -L 18789:127.0.0.1:18789 me@gw.example" {
		t.Fatalf("default: %v %q", err, out)
	}
	os.MkdirAll(state, 0o700)
	os.WriteFile(filepath.Join(state, "clawgate.json"), []byte(`{"version":1,"gateway":{"port":19000}}`), 0o600)
	out, err = runCLI(t, state, "tunnel", "--local-addr", "127.0.0.2", "gw.example", "--", "-p", "2222", "-i", "/k ey")
	want := "ssh -N -o ExitOnForwardFailure=yes -L 127.0.0.2:19000:127.0.0.1:19000 -p 2222 -i '/k ey' gw.example"
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("configured port: %v\n got %q\nwant %q", err, out, want)
	}
	for _, args := range [][]string{
		{"tunnel", "-oProxyCommand=touch /tmp/x"},
		{"tunnel", "--", "-oProxyCommand=x"},
		{"tunnel", "gw.example", "--local-addr", "0.0.0.0"},
		{"tunnel"},
	} {
		if out, err := runCLIAll(t, state, args...); err == nil {
			t.Errorf("%v accepted:\n%s", args, out)
		}
	}
	out, _ = runCLIAll(t, state, "tunnel", "-h")
	if !strings.Contains(out, "local trust") {
		t.Errorf("tunnel help does not say that SSH access is local trust:\n%s", out)
	}
}

// sshd is a private OpenSSH server on a loopback port.
type sshd struct {
	port       int
	dir        string
	user       string
	out        *syncBuf
	knownHosts string
	identity   string
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startSSHD runs /usr/sbin/sshd -D on 127.0.0.1 with a throwaway host key,
// one authorized test key and its own config (no PAM, StrictModes off).
func startSSHD(t *testing.T) *sshd {
	t.Helper()
	bin := "/usr/sbin/sshd"
	_, errD := os.Stat(bin)
	_, errC := exec.LookPath("ssh")
	_, errK := exec.LookPath("ssh-keygen")
	if errD != nil || errC != nil || errK != nil {
		if os.Getenv("CLAWGATE_REQUIRE_COMPAT") == "1" {
			t.Fatalf("OpenSSH missing (%v %v %v): run scripts/deps.sh", errD, errC, errK)
		}
		t.Skipf("OpenSSH not installed (scripts/deps.sh installs it)")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		// sshd's privilege separation directory; the Debian service
		// creates it at start, which never happens here.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("cannot create /run/sshd: %v", err)
		}
	}
	dir := t.TempDir()
	for _, k := range []string{"hostkey", "id"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "clawgate-test-"+k, "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "id.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	port := freePort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding local
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
LogLevel VERBOSE
`, port, filepath.Join(dir, "hostkey"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	cfgFile := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	if out, err := exec.Command(bin, "-t", "-f", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	s := &sshd{port: port, dir: dir, user: u.Username, out: &syncBuf{}, identity: filepath.Join(dir, "id"),
		knownHosts: filepath.Join(dir, "known_hosts")}
	hostPub, _ := os.ReadFile(filepath.Join(dir, "hostkey.pub"))
	os.WriteFile(s.knownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub)), 0o600)
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sshd output:\n%s", s.out.String())
		}
	})
	// Ready when it greets with its version banner.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("sshd exited:\n%s", s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd not ready:\n%s", s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sshOptions make the client use only the test key and the test host key.
func (s *sshd) sshOptions() []string {
	return []string{"-F", "/dev/null", "-p", strconv.Itoa(s.port), "-i", s.identity,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10"}
}

// TestSSHTunnel: a real OpenSSH server, `clawgate tunnel --run` to it, and
// a full signed connect plus health through the tunnel. The connection
// arrives on the gateway's loopback (from sshd), so the device is local
// and is paired silently: SSH access to the host is local trust.
func TestSSHTunnel(t *testing.T) {
	s := startSSHD(t)
	state := filepath.Join(t.TempDir(), "state")
	g := startGateway(t, state)
	tok, err := runCLI(t, state, "token")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)

	// The tunnel's local end: the same port as the gateway (its Host check
	// wants its own port), on another loopback address.
	const localAddr = "127.0.0.2"
	localURL := fmt.Sprintf("ws://%s:%d", localAddr, g.port)
	args := append([]string{"tunnel", "--run", "--port", strconv.Itoa(g.port), "--local-addr", localAddr,
		s.user + "@127.0.0.1", "--"}, s.sshOptions()...)
	printed, err := runCLI(t, state, append([]string{"tunnel"}, args[2:]...)...)
	if err != nil || !strings.Contains(printed, fmt.Sprintf("-L %s:%d:127.0.0.1:%d", localAddr, g.port, g.port)) {
		t.Fatalf("printed command: %v %s", err, printed)
	}
	tun := exec.Command(binary, args...)
	tun.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+state)
	tunOut := &syncBuf{}
	tun.Stdout, tun.Stderr = tunOut, tunOut
	if err := tun.Start(); err != nil {
		t.Fatal(err)
	}
	tunDone := make(chan error, 1)
	go func() { tunDone <- tun.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("clawgate tunnel output:\n%s", tunOut.String())
		}
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", localAddr, g.port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-tunDone:
			t.Fatalf("clawgate tunnel exited: %v\n%s", err, tunOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnel not listening on %s:%d:\n%s", localAddr, g.port, tunOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: localURL, Token: tok, Identity: id,
		Scopes: []string{protocol.ScopeRead, protocol.ScopeWrite}, DisplayName: "through-ssh"})
	if err != nil {
		t.Fatalf("signed connect through the tunnel: %v", err)
	}
	if c.Hello().Auth.DeviceToken == "" {
		t.Error("the tunnelled device was not paired silently (it arrives on loopback: local trust)")
	}
	res, err := c.Call(ctx, "health", nil)
	if err != nil {
		t.Fatalf("health through the tunnel: %v", err)
	}
	var h struct {
		OK bool `json:"ok"`
	}
	if json.Unmarshal(res, &h) != nil || !h.OK {
		t.Fatalf("health: %s", res)
	}
	c.Close()
	if !strings.Contains(s.out.String(), "Accepted publickey for "+s.user) {
		t.Errorf("sshd did not log the key login:\n%s", s.out.String())
	}

	// SIGTERM stops the tunnel cleanly (clawgate passes it to ssh).
	_ = tun.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-tunDone:
		if err != nil {
			t.Errorf("clawgate tunnel after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = tun.Process.Kill()
		t.Fatal("clawgate tunnel did not stop within 10s of SIGTERM")
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", localAddr, g.port), time.Second); err == nil {
		c.Close()
		t.Error("the tunnel's local port still accepts after the tunnel stopped")
	}
	if logs := stopProc(t, g); !strings.Contains(logs, "device approved silently") {
		t.Errorf("the gateway did not treat the tunnelled device as local:\n%s", logs)
	}
}
