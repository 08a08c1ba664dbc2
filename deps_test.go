package clawgate_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/clawgate/clawgate"

// allowedImports is the import graph of ARCHITECTURE.md: for each package,
// the module packages it may import. Anything not listed may import nothing
// from the module.
var allowedImports = map[string][]string{
	"schedule": {},
	// Helper processes: the RPC and process plumbing, stdlib only.
	"ipc":        {},
	"protocol":   {},
	"authn":      {"protocol"},
	"store":      {},
	"store/bolt": {"store"},
	"pairing":    {"store", "authn", "protocol"},
	"config":     {},
	"logring":    {},
	"deploy":     {},
	"client":     {"protocol", "authn", "tlspin"},
	"tlspin":     {},
	"agent":      {"protocol"},
	"webchat":    {},
	"canvas":     {"protocol"},
	"gateway": {"protocol", "authn", "pairing", "store", "tsnode", "tlspin", "providers", "logring",
		"agent", "webchat", "schedule", "canvas"},
	"test/compat":  {"protocol", "authn", "client"},
	"cmd/clawgate": {"*"},

	// The load tool speaks the protocol as a client only.
	"cmd/clawgate-load": {"client", "protocol", "authn"},
	// The tailnet node's helper process: the node, and the wire contract
	// over the gateway's ipc connection.
	"cmd/clawgate-tailnet": {"ipc", "tsnode", "tsnode/tsipc"},

	"providers":              {"protocol"},
	"providers/providertest": {"providers"},
	"providers/telegram":     {"providers", "protocol"},
	"providers/slack":        {"providers", "protocol"},
	"providers/discord":      {"providers", "protocol"},
	// The gateway's side of WhatsApp: it runs the session in the
	// clawgate-whatsapp helper (cmd/clawgate-whatsapp) over ipc.
	"providers/whatsapp":        {"providers", "protocol", "ipc"},
	"providers/whatsapp/device": {"providers", "providers/whatsapp"},
	"cmd/clawgate-whatsapp":     {"ipc", "providers", "providers/whatsapp", "providers/whatsapp/device"},
	// Fakes of each service's wire protocol, for tests only: they import
	// no SDK, so the providers are checked against the protocol itself.
	"providers/telegram/fake": {},
	"providers/slack/fake":    {},
	"providers/discord/fake":  {},
	// The WhatsApp fake speaks Noise and Signal with whatsmeow's own codecs.
	"providers/whatsapp/fake": {},

	// tsnode's Status, Identity and Verdict are tsipc's, so that the helper
	// sends them as they are.
	"tsnode": {"tsnode/tsipc"},
	// The gateway↔clawgate-tailnet calls: no tailscale.com, so the gateway
	// speaks to the helper without linking the node.
	"tsnode/tsipc": {},
	// The in-process tailnet (control server, DERP, peer nodes) for tests.
	"tsnode/tsnodetest": {},
}

// testHarnesses may import a third-party package beside its exclusive
// owner, and no package may import them outside its tests.
var testHarnesses = map[string]string{
	"tsnode/tsnodetest":       "tailscale.com",
	"providers/whatsapp/fake": "go.mau.fi/whatsmeow",
}

// exclusiveImports: third-party packages only one module package may import.
var exclusiveImports = map[string]string{
	"go.etcd.io/bbolt": "store/bolt",
	"tailscale.com":    "tsnode",

	"github.com/go-telegram/bot":    "providers/telegram",
	"github.com/slack-go/slack":     "providers/slack",
	"github.com/bwmarrin/discordgo": "providers/discord",
	"go.mau.fi/whatsmeow":           "providers/whatsapp/device",
	"modernc.org/sqlite":            "providers/whatsapp/device",
}

func goList(t *testing.T, format string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", format, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestImportGraph keeps the package graph one-way.
func TestImportGraph(t *testing.T) {
	for _, line := range goList(t, "{{.ImportPath}} {{join .Imports \" \"}}") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		if pkg == "" {
			continue
		}
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("package %s is not in the architecture's import table; add it deliberately", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			for third, owner := range exclusiveImports {
				if (imp == third || strings.HasPrefix(imp, third+"/")) && pkg != owner && testHarnesses[pkg] != third {
					t.Errorf("%s imports %s; only %s may", pkg, imp, owner)
				}
			}
			dep, internal := strings.CutPrefix(imp, module+"/")
			if _, harness := testHarnesses[dep]; internal && harness {
				t.Errorf("%s imports the test harness %s outside its tests", pkg, dep)
			}
			if !internal || slices.Contains(allowed, "*") {
				continue
			}
			if !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which the architecture does not allow", pkg, dep)
			}
		}
	}
}

// TestPackageDocs: every package says what it is for.
func TestPackageDocs(t *testing.T) {
	for _, line := range goList(t, "{{.ImportPath}}|{{.Name}}|{{.Doc}}") {
		parts := strings.SplitN(line, "|", 3)
		if len(parts) < 3 || parts[0] == module {
			continue
		}
		if strings.TrimSpace(parts[2]) == "" {
			t.Errorf("package %s has no package doc comment", parts[0])
		}
	}
}

// helperOnly: third-party trees that only a helper binary may link. The
// gateway binary carries none of them, so a gateway that uses neither the
// tailnet nor WhatsApp does not pay for their code or their package
// initializers in memory (BENCHMARKS.md, "Idle memory").
var helperOnly = map[string]string{
	"tailscale.com":       "cmd/clawgate-tailnet",
	"go.mau.fi/whatsmeow": "cmd/clawgate-whatsapp",
	"modernc.org/sqlite":  "cmd/clawgate-whatsapp",
}

// TestGatewayLinksNoHelperSDK: the tailnet node and WhatsApp stay in
// their helpers.
func TestGatewayLinksNoHelperSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/clawgate").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/gateway") {
		t.Fatalf("go list -deps ./cmd/clawgate does not list the gateway package: %q", deps)
	}
	for _, dep := range deps {
		for tree, helper := range helperOnly {
			if dep == tree || strings.HasPrefix(dep, tree+"/") {
				t.Errorf("cmd/clawgate links %s; it belongs in %s", dep, helper)
			}
		}
	}
}
