package gateway

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkMetricsScrape: GET /metrics over loopback HTTP with 100
// authenticated connections open.
func BenchmarkMetricsScrape(b *testing.B) {
	g := startGateway(b, nil)
	for range 100 {
		g.dialClient(b, nil)
	}
	c := &http.Client{}
	url := "http://" + g.addr + "/metrics"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}
