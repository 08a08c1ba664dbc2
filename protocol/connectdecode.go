package protocol

import (
	"encoding/json"
	"strconv"
)

// DecodeConnectParams converts connect params already parsed by ParseStrict
// (and validated against the ConnectParams schema) into ConnectParams
// without a second pass of encoding/json over the frame. It handles the
// plain shapes real clients send: known keys only, integers in plain
// notation, no nulls. For anything else it
// returns ok=false and the caller decodes with encoding/json, so results
// and error messages are those of json.Unmarshal in every case
// (FuzzConnectFrame checks that both agree whenever ok is true).
func DecodeConnectParams(v any) (p ConnectParams, ok bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return p, false
	}
	for k, x := range m {
		switch k {
		case "minProtocol":
			p.MinProtocol, ok = plainInt(x)
		case "maxProtocol":
			p.MaxProtocol, ok = plainInt(x)
		case "client":
			p.Client, ok = decodeClient(x)
		case "caps":
			p.Caps, ok = plainStrings(x)
		case "commands":
			p.Commands, ok = plainStrings(x)
		case "permissions":
			p.Permissions, ok = plainBools(x)
		case "pathEnv":
			p.PathEnv, ok = plainString(x)
		case "role":
			p.Role, ok = plainString(x)
		case "scopes":
			p.Scopes, ok = plainStrings(x)
		case "device":
			p.Device, ok = decodeDevice(x)
		case "auth":
			p.Auth, ok = decodeAuth(x)
		case "locale":
			p.Locale, ok = plainString(x)
		case "userAgent":
			p.UserAgent, ok = plainString(x)
		default:
			ok = false
		}
		if !ok {
			return ConnectParams{}, false
		}
	}
	return p, true
}

func decodeClient(v any) (c ClientInfo, ok bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return c, false
	}
	for k, x := range m {
		var f *string
		switch k {
		case "id":
			f = &c.ID
		case "displayName":
			f = &c.DisplayName
		case "version":
			f = &c.Version
		case "buildId":
			f = &c.BuildID
		case "platform":
			f = &c.Platform
		case "deviceFamily":
			f = &c.DeviceFamily
		case "modelIdentifier":
			f = &c.ModelIdentifier
		case "timeZone":
			f = &c.TimeZone
		case "mode":
			f = &c.Mode
		case "instanceId":
			f = &c.InstanceID
		default:
			return c, false
		}
		if *f, ok = plainString(x); !ok {
			return c, false
		}
	}
	return c, true
}

func decodeDevice(v any) (*DeviceProof, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	d := &DeviceProof{}
	for k, x := range m {
		switch k {
		case "id":
			d.ID, ok = plainString(x)
		case "publicKey":
			d.PublicKey, ok = plainString(x)
		case "signature":
			d.Signature, ok = plainString(x)
		case "nonce":
			d.Nonce, ok = plainString(x)
		case "signedAt":
			var n int
			n, ok = plainInt(x)
			d.SignedAt = int64(n)
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
	}
	return d, true
}

func decodeAuth(v any) (*ConnectAuth, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	a := &ConnectAuth{}
	for k, x := range m {
		switch k {
		case "token":
			a.Token, ok = plainString(x)
		case "bootstrapToken":
			a.BootstrapToken, ok = plainString(x)
		case "deviceToken":
			a.DeviceToken, ok = plainString(x)
		case "password":
			a.Password, ok = plainString(x)
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
	}
	return a, true
}

// plainString accepts a string. ParseStrict decodes escapes exactly as
// encoding/json does (FuzzParseStrict), so the value needs no second look.
func plainString(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

func plainStrings(v any) ([]string, bool) {
	a, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(a))
	for i, x := range a {
		if out[i], ok = plainString(x); !ok {
			return nil, false
		}
	}
	return out, true
}

func plainBools(v any) (map[string]bool, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	out := make(map[string]bool, len(m))
	for k, x := range m {
		b, isBool := x.(bool)
		if !isBool {
			return nil, false
		}
		out[k] = b
	}
	return out, true
}

// plainInt accepts an integer written without fraction or exponent that
// fits an int64 (the widest field; int is 64-bit where clawgate runs, and
// anything else falls back).
func plainInt(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, strconv.IntSize)
	if err != nil {
		return 0, false
	}
	return int(i), true
}
