package authn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

const testSecret = "correct-horse-battery-staple-0123456789"

func TestSharedSecretEqual(t *testing.T) {
	s, err := NewSharedSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		candidate string
		want      bool
	}{
		{"exact", testSecret, true},
		{"empty (missing credential)", "", false},
		{"prefix", testSecret[:10], false},
		{"longer", testSecret + "x", false},
		{"one byte off", "C" + testSecret[1:], false},
		{"trailing newline", testSecret + "\n", false},
		{"transcript wrong token", "definitely-wrong-token", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Equal(tt.candidate); got != tt.want {
				t.Errorf("Equal(%q) = %v", tt.candidate, got)
			}
		})
	}
}

func TestSharedSecretZero(t *testing.T) {
	var zero SharedSecret
	if zero.IsSet() || zero.Equal("") || zero.Equal("anything") {
		t.Fatal("zero SharedSecret must match nothing")
	}
	if _, err := NewSharedSecret(""); !errors.Is(err, ErrEmptyToken) {
		t.Fatalf("NewSharedSecret(\"\") err = %v", err)
	}
	// The digest of "" must not make an unset secret match a hashed empty candidate.
	if (SharedSecret{hash: HashToken("")}).Equal("") {
		t.Fatal("unset secret matched")
	}
}

// TestSharedSecretA19 asserts, without timing, that the compare cannot leak
// length or prefix: the type holds only a fixed-size digest, and Matches
// compares digests with crypto/subtle.
func TestSharedSecretA19(t *testing.T) {
	typ := reflect.TypeOf(SharedSecret{})
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if k := f.Type.Kind(); k == reflect.String || k == reflect.Slice || k == reflect.Pointer {
			t.Errorf("SharedSecret.%s is a %s: only the digest may be held", f.Name, k)
		}
	}
	if reflect.TypeOf(TokenHash{}).Len() != 32 {
		t.Error("TokenHash is not a 32-byte digest")
	}
	body := funcSource(t, "secret.go", "Matches")
	if !strings.Contains(body, "subtle.ConstantTimeCompare(") || !strings.Contains(body, "HashToken(candidate)") {
		t.Errorf("TokenHash.Matches does not compare digests with subtle:\n%s", body)
	}
	if eq := funcSource(t, "secret.go", "Equal"); !strings.Contains(eq, ".Matches(candidate)") {
		t.Errorf("SharedSecret.Equal does not go through Matches:\n%s", eq)
	}
}

// funcSource returns the source text of the function or method name in file.
func funcSource(t *testing.T, file, name string) string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	src := readFile(t, file)
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == name {
			return src[fset.Position(fd.Pos()).Offset:fset.Position(fd.End()).Offset]
		}
	}
	t.Fatalf("%s not found in %s", name, file)
	return ""
}

func TestSecretsRedacted(t *testing.T) {
	s, _ := NewSharedSecret(testSecret)
	h := HashToken(testSecret)
	digestHex := fmt.Sprintf("%x", [32]byte(h))
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outputs = append(outputs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &s))
	}
	outputs = append(outputs, fmt.Sprint(s), fmt.Sprintln(s), s.String(), s.GoString())
	outputs = append(outputs, fmt.Sprintf("%v", struct{ S SharedSecret }{s}))

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "secret", s, "hash", h)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("cfg", "secret", s)
	outputs = append(outputs, buf.String())
	j, err := json.Marshal(map[string]any{"s": s, "p": &s})
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(j))

	for _, out := range outputs {
		if strings.Contains(out, testSecret) || strings.Contains(strings.ToLower(out), digestHex[:16]) {
			t.Errorf("secret or digest leaked: %q", out)
		}
	}
	for _, verb := range []string{"%v", "%s", "%x", "%d", "%#v"} {
		if got := fmt.Sprintf(verb, s); got != redacted {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, got, redacted)
		}
	}
	if !strings.Contains(buf.String(), `"secret":"[redacted]"`) || !strings.Contains(string(j), `"s":"[redacted]"`) {
		t.Errorf("slog = %s, json = %s", buf.String(), j)
	}
}

func TestGenerateToken(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		tok, err := GenerateToken()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 32 || len(tok) != 43 {
			t.Fatalf("token %q: %d bytes, %v", tok, len(raw), err)
		}
		if err := CheckTokenStrength(tok); err != nil {
			t.Fatalf("generated token fails CheckTokenStrength: %v", err)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestCheckTokenStrength(t *testing.T) {
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"C7 strong", testSecret, nil},
		{"C7 empty", "", ErrEmptyToken},
		{"C7 short", "hunter2", ErrWeakToken},
		{"23 chars", strings.Repeat("a", 23), ErrWeakToken},
		{"24 chars", strings.Repeat("a", 24), nil},
		{"pipe", strings.Repeat("a", 24) + "|", ErrInvalidPayloadField},
		{"newline", strings.Repeat("a", 24) + "\n", ErrInvalidPayloadField},
		{"too long", strings.Repeat("a", MaxTokenLen+1), ErrInvalidPayloadField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTokenStrength(tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestTokenHashMatches(t *testing.T) {
	h := HashToken("device-token")
	if !h.Matches("device-token") || h.Matches("device-token ") || h.Matches("") {
		t.Fatal("TokenHash.Matches wrong")
	}
}
