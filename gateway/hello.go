package gateway

import (
	"encoding/json"
	"slices"

	"github.com/clawgate/clawgate/protocol"
)

// The hello-ok response is encoded in three parts so that its largest
// part, features.methods and features.events, is encoded once per
// configuration instead of once per connection. The result is byte for
// byte what json.Marshal(protocol.OKResponse(id, hello)) gives
// (TestHelloFrameMatchesMarshal): encoding/json writes a struct's fields in
// order, so the parts splice into the same document.

// featuresCache is the encoded features object for one method count and
// event list (methods are only ever added, at configuration).
type featuresCache struct {
	methods int
	events  []string
	json    []byte
}

// featuresJSON returns the encoded features object, re-encoding only when
// the method set or the event list changed.
func (s *Server) featuresJSON() []byte {
	ev := s.implementedEvents()
	if fc := s.features.Load(); fc != nil && fc.methods == len(s.methods) && slices.Equal(fc.events, ev) {
		return fc.json
	}
	fc := &featuresCache{methods: len(s.methods), events: ev,
		json: mustJSON(protocol.Features{Methods: s.methodNames(), Events: ev})}
	s.features.Store(fc)
	return fc.json
}

// helloHead and helloTail are protocol.HelloOK's fields before and after
// features, with the same names and options.
type helloHead struct {
	Type     string              `json:"type"`
	Protocol int                 `json:"protocol"`
	Server   protocol.ServerInfo `json:"server"`
}

type helloTail struct {
	Snapshot          protocol.Snapshot  `json:"snapshot"`
	CanvasHostURL     string             `json:"canvasHostUrl,omitempty"`
	PluginSurfaceURLs map[string]string  `json:"pluginSurfaceUrls,omitempty"`
	Auth              protocol.HelloAuth `json:"auth"`
	Policy            protocol.Policy    `json:"policy"`
}

// helloFrame encodes the response frame answering connect request id with
// h, whose Features are replaced by features (an encoded features object).
func helloFrame(id string, h *protocol.HelloOK, features []byte) ([]byte, error) {
	idJSON, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	head, err := json.Marshal(helloHead{Type: h.Type, Protocol: h.Protocol, Server: h.Server})
	if err != nil {
		return nil, err
	}
	tail, err := json.Marshal(helloTail{Snapshot: h.Snapshot, CanvasHostURL: h.CanvasHostURL,
		PluginSurfaceURLs: h.PluginSurfaceURLs, Auth: h.Auth, Policy: h.Policy})
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 48+len(idJSON)+len(head)+len(features)+len(tail))
	b = append(b, `{"type":`...)
	b = append(b, `"`+protocol.TypeRes+`"`...)
	b = append(b, `,"id":`...)
	b = append(b, idJSON...)
	b = append(b, `,"ok":true,"payload":`...)
	b = append(b, head[:len(head)-1]...) // without its closing brace
	b = append(b, `,"features":`...)
	b = append(b, features...)
	b = append(b, ',')
	b = append(b, tail[1:]...) // without its opening brace
	b = append(b, '}')
	return b, nil
}
