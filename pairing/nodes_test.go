package pairing_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/clawgate/clawgate/pairing"
)

func nodeInfo(d device, commands ...string) pairing.NodeConnectInfo {
	return pairing.NodeConnectInfo{NodeID: d.id, DisplayName: "box", Platform: "linux", DeviceFamily: "Linux",
		ClientID: "node-host", ClientMode: "node", Caps: []string{"system"}, Commands: commands}
}

func (e *env) reconcile(in pairing.NodeConnectInfo) pairing.NodeReconcile {
	e.t.Helper()
	r, err := e.m.ReconcileNode(in)
	if err != nil {
		e.t.Fatalf("ReconcileNode: %v", err)
	}
	return r
}

func TestNodeSurfaceNeedsApproval(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	e.pair(d, "node", nil)

	r := e.reconcile(nodeInfo(d, "system.which", "system.run"))
	if len(r.Commands) != 0 || r.Approved || r.Pending == nil || !r.Created {
		t.Fatalf("first connect: %+v, want no effective commands and a new pending request", r)
	}
	want := []string{"operator.pairing", "operator.admin"}
	if !slices.Equal(r.Pending.RequiredApproveScopes, want) {
		t.Fatalf("requiredApproveScopes = %v, want %v", r.Pending.RequiredApproveScopes, want)
	}
	rid := r.Pending.RequestID

	// The same surface again: the same request, no write.
	before := e.st.updates.Load()
	r2 := e.reconcile(nodeInfo(d, "system.run", "system.which"))
	if r2.Pending == nil || r2.Pending.RequestID != rid || r2.Created {
		t.Fatalf("reconnect: %+v, want the same request %s", r2.Pending, rid)
	}
	if e.st.updates.Load() != before {
		t.Fatal("an unchanged reconnect wrote to the store")
	}

	// system.run-class commands need admin, not just pairing+write.
	_, err := e.m.ApproveNode(rid, pairing.Caller{Scopes: []string{"operator.pairing", "operator.write"}})
	var ms *pairing.MissingScopeError
	if !errors.As(err, &ms) || ms.Scope != "operator.admin" {
		t.Fatalf("ApproveNode without admin = %v, want missing operator.admin", err)
	}
	res, err := e.m.ApproveNode(rid, pairing.Caller{Scopes: []string{"operator.pairing", "operator.admin"}})
	if err != nil {
		t.Fatalf("ApproveNode: %v", err)
	}
	if res.Resolved.NodeID != d.id || res.Resolved.Decision != "approved" || !slices.Equal(res.Node.Commands, []string{"system.run", "system.which"}) {
		t.Fatalf("approve result %+v", res)
	}
	if _, err := e.m.ApproveNode(rid, admin); !errors.Is(err, pairing.ErrNotFound) {
		t.Fatalf("second approval = %v, want ErrNotFound", err)
	}

	r3 := e.reconcile(nodeInfo(d, "system.run", "system.which"))
	if !slices.Equal(r3.Commands, []string{"system.run", "system.which"}) || r3.Pending != nil {
		t.Fatalf("after approval: %+v", r3)
	}

	// A widened surface: only the approved part is effective until approved.
	r4 := e.reconcile(nodeInfo(d, "system.run", "system.which", "camera.snap"))
	if !slices.Equal(r4.Commands, []string{"system.run", "system.which"}) || r4.Pending == nil || !r4.Created {
		t.Fatalf("widened: %+v", r4)
	}
	// Rejected: the old surface stays, the request is gone.
	if _, err := e.m.RejectNode(r4.Pending.RequestID, admin); err != nil {
		t.Fatal(err)
	}
	l, err := e.m.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Pending) != 0 || len(l.Paired) != 1 || !slices.Equal(l.Paired[0].Commands, []string{"system.run", "system.which"}) {
		t.Fatalf("listing after reject: %+v", l)
	}
	// A narrowed surface drops nothing from the approval and needs none.
	r5 := e.reconcile(nodeInfo(d, "system.which"))
	if !slices.Equal(r5.Commands, []string{"system.which"}) || r5.Pending != nil {
		t.Fatalf("narrowed: %+v", r5)
	}
}

func TestNodeApprovalScopes(t *testing.T) {
	for _, c := range []struct {
		cmds []string
		want []string
	}{
		{nil, []string{"operator.pairing"}},
		{[]string{"camera.list"}, []string{"operator.pairing", "operator.write"}},
		{[]string{"camera.list", "system.which"}, []string{"operator.pairing", "operator.admin"}},
		{[]string{"fs.listDir"}, []string{"operator.pairing", "operator.admin"}},
	} {
		if got := pairing.NodeApprovalScopes(c.cmds); !slices.Equal(got, c.want) {
			t.Errorf("NodeApprovalScopes(%v) = %v, want %v", c.cmds, got, c.want)
		}
	}
	e := newEnv(t)
	d := newDevice(t)
	e.pair(d, "node", nil)
	r := e.reconcile(nodeInfo(d, "camera.list"))
	if _, err := e.m.ApproveNode(r.Pending.RequestID, pairingOnly); err == nil {
		t.Fatal("pairing alone approved a command surface")
	}
	if _, err := e.m.ApproveNode(r.Pending.RequestID, pairing.Caller{Scopes: []string{"operator.pairing", "operator.write"}}); err != nil {
		t.Fatalf("pairing+write: %v", err)
	}
}

func TestNodeCrossDeviceManagement(t *testing.T) {
	e := newEnv(t)
	d, other := newDevice(t), newDevice(t)
	e.pair(d, "node", nil)
	r := e.reconcile(nodeInfo(d, "camera.list"))
	// A device-token caller with pairing+write but not admin, acting on
	// another device's node, is refused and nothing changes.
	mallory := pairing.Caller{DeviceID: other.id, Scopes: []string{"operator.pairing", "operator.write"}}
	if _, err := e.m.ApproveNode(r.Pending.RequestID, mallory); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("cross-device approve = %v, want ErrForbidden", err)
	}
	if _, err := e.m.RenameNode(d.id, "pwned", mallory); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("cross-device rename = %v, want ErrForbidden", err)
	}
	if _, err := e.m.RemoveNode(d.id, mallory); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("device-token remove = %v, want ErrForbidden", err)
	}
	l, _ := e.m.ListNodes()
	if len(l.Pending) != 1 {
		t.Fatalf("pending after refusals: %+v", l)
	}
}

func TestNodeRemoveAndRename(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	e.pair(d, "node", nil)
	r := e.reconcile(nodeInfo(d, "camera.list"))
	if _, err := e.m.ApproveNode(r.Pending.RequestID, admin); err != nil {
		t.Fatal(err)
	}
	if name, err := e.m.RenameNode(d.id, "  kitchen  ", admin); err != nil || name != "kitchen" {
		t.Fatalf("rename = %q, %v", name, err)
	}
	l, _ := e.m.ListNodes()
	if l.Paired[0].DisplayName != "kitchen" {
		t.Fatalf("display name %q", l.Paired[0].DisplayName)
	}
	if _, err := e.m.RenameNode(d.id, "   ", admin); !errors.Is(err, pairing.ErrInvalid) {
		t.Fatalf("empty rename = %v", err)
	}
	removed, err := e.m.RemoveNode(d.id, admin)
	if err != nil || !removed {
		t.Fatalf("RemoveNode = %v, %v; want the node-only device removed", removed, err)
	}
	if _, err := e.stored(d.id); err == nil {
		t.Fatal("device record still stored")
	}
	if _, err := e.m.ReconcileNode(nodeInfo(d, "camera.list")); !errors.Is(err, pairing.ErrNotPaired) {
		t.Fatalf("reconcile after removal = %v, want ErrNotPaired", err)
	}
	if _, err := e.m.RemoveNode(d.id, admin); !errors.Is(err, pairing.ErrNotFound) {
		t.Fatalf("second removal = %v", err)
	}
}

func TestNodeSurfaceNotForOperatorOnlyDevice(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	e.pair(d, "operator", readScopes)
	if _, err := e.m.ReconcileNode(nodeInfo(d, "system.run")); !errors.Is(err, pairing.ErrNotPaired) {
		t.Fatalf("ReconcileNode for an operator-only device = %v, want ErrNotPaired", err)
	}
}
