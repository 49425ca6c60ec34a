package dns

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func ap(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestTableLookup(t *testing.T) {
	tb := NewTable()
	tb.Set(Entry{Network: "front", Container: "ns/web", Names: []string{"Web", "www"}, Addrs: []netip.Addr{ap("10.1.0.2")}})
	tb.Set(Entry{Network: "front", Container: "ns/api", Names: []string{"api"}, Addrs: []netip.Addr{ap("10.1.0.3")}})
	tb.Set(Entry{Network: "back", Container: "ns/api", Names: []string{"api"}, Addrs: []netip.Addr{ap("10.2.0.3")}})
	tb.Set(Entry{Network: "back", Container: "ns/db", Names: []string{"db"}, Addrs: []netip.Addr{ap("10.2.0.4")}})

	check := func(network string, src netip.Addr, name string, want ...string) {
		t.Helper()
		got, found := tb.Lookup(network, src, name)
		if len(want) == 0 {
			if found {
				t.Errorf("%s from %s on %s: found %v, want not found", name, src, network, got)
			}
			return
		}
		var gs []string
		for _, a := range got {
			gs = append(gs, a.String())
		}
		if !found || !slices.Equal(gs, want) {
			t.Errorf("%s from %s on %s = %v (found %v), want %v", name, src, network, gs, found, want)
		}
	}
	check("front", ap("10.1.0.2"), "WEB.", "10.1.0.2")
	check("front", ap("10.1.0.2"), "www.front", "10.1.0.2")
	check("front", ap("10.1.0.2"), "db")             // web is not on back
	check("front", ap("10.1.0.3"), "db", "10.2.0.4") // api is on both
	check("front", ap("10.1.0.3"), "api", "10.1.0.3")
	check("back", ap("10.2.0.4"), "web")
	check("front", ap("10.9.9.9"), "api", "10.1.0.3") // unknown client: its network only

	names, ok := tb.Reverse("front", ap("10.1.0.3"), ap("10.2.0.4"))
	if !ok || names[0] != "db.back" {
		t.Errorf("Reverse = %v %v", names, ok)
	}
	tb.Remove("back", "ns/api")
	check("front", ap("10.1.0.3"), "db")
	tb.Remove("front", "ns/web")
	check("front", ap("10.1.0.3"), "web")
	tb.Set(Entry{Network: "front", Container: "ns/api", Names: []string{"api2"}, Addrs: []netip.Addr{ap("10.1.0.3")}})
	check("front", ap("10.1.0.3"), "api")
	check("front", ap("10.1.0.3"), "api2", "10.1.0.3")
}

func TestParseReverse(t *testing.T) {
	for name, want := range map[string]string{
		"4.3.2.1.in-addr.arpa.": "1.2.3.4",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.": "2001:db8::1",
	} {
		got, ok := parseReverse(name)
		if !ok || got.String() != want {
			t.Errorf("%s = %v %v, want %s", name, got, ok, want)
		}
	}
	for _, bad := range []string{"3.2.1.in-addr.arpa.", "256.3.2.1.in-addr.arpa.", "01.3.2.1.in-addr.arpa.", "x.ip6.arpa.", "example.com."} {
		if _, ok := parseReverse(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

// upstream is a real DNS server on loopback answering every A query with
// one fixed address and counting the queries.
type upstream struct {
	addr    netip.AddrPort
	answer  netip.Addr
	queries atomic.Int32
	conn    *net.UDPConn
	ln      net.Listener
}

func startUpstream(t *testing.T, answer string) *upstream {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{conn: pc, answer: ap(answer), addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	ln, err := net.Listen("tcp", u.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	u.ln = ln
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(u.reply(buf[:n]), from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				m, err := readTCPMessage(c)
				if err == nil {
					writeTCPMessage(c, u.reply(m))
				}
			}()
		}
	}()
	return u
}

func (u *upstream) reply(m []byte) []byte {
	u.queries.Add(1)
	var p dnsmessage.Parser
	h, _ := p.Start(m)
	q, _ := p.Question()
	return build(h, &q, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) error {
		return b.AResource(rrHeader(q), dnsmessage.AResource{A: u.answer.As4()})
	}, 65535)
}

func query(t *testing.T, srv netip.AddrPort, name string, qtype dnsmessage.Type, tcp bool) (dnsmessage.Message, error) {
	t.Helper()
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: uint16(time.Now().UnixNano()), RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}},
	}
	raw, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	c, err := net.Dial(network, srv.String())
	if err != nil {
		return dnsmessage.Message{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	var resp []byte
	if tcp {
		if err := writeTCPMessage(c, raw); err != nil {
			return dnsmessage.Message{}, err
		}
		if resp, err = readTCPMessage(c); err != nil {
			return dnsmessage.Message{}, err
		}
	} else {
		c.Write(raw)
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			return dnsmessage.Message{}, err
		}
		resp = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		return m, err
	}
	if m.Header.ID != q.Header.ID {
		return m, fmt.Errorf("reply id %d, query id %d", m.Header.ID, q.Header.ID)
	}
	return m, nil
}

func answers(m dnsmessage.Message) []string {
	var out []string
	for _, a := range m.Answers {
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			out = append(out, netip.AddrFrom4(r.A).String())
		case *dnsmessage.AAAAResource:
			out = append(out, netip.AddrFrom16(r.AAAA).String())
		case *dnsmessage.PTRResource:
			out = append(out, r.PTR.String())
		}
	}
	return out
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if !cfg.Addr.IsValid() {
		cfg.Addr = ap("127.0.0.1")
	}
	if cfg.Clients == nil {
		cfg.Clients = loopback
	}
	if cfg.Network == "" {
		cfg.Network = "net"
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestServerAnswersAndForwards(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "192.0.2.99")
	own := startUpstream(t, "192.0.2.77")
	tb := NewTable()
	tb.Set(Entry{Network: "net", Container: "c1", Names: []string{"web", "alias"}, Addrs: []netip.Addr{ap("10.7.0.2")}})
	// The querying "container" is the test itself, on 127.0.0.2, with
	// its own --dns server.
	tb.Set(Entry{Network: "net", Container: "c2", Names: []string{"client"}, Addrs: []netip.Addr{ap("127.0.0.1")}, Upstreams: []netip.AddrPort{own.addr}})
	s := startServer(t, Config{Table: tb, Forward: func() []netip.AddrPort { return []netip.AddrPort{up.addr} }})

	for _, tcp := range []bool{false, true} {
		m, err := query(t, s.Addr(), "web.", dnsmessage.TypeA, tcp)
		if err != nil || m.RCode != dnsmessage.RCodeSuccess || !slices.Equal(answers(m), []string{"10.7.0.2"}) || !m.Authoritative {
			t.Errorf("A web (tcp %v): %v %+v %v", tcp, err, m.Header, answers(m))
		}
	}
	m, err := query(t, s.Addr(), "ALIAS.net.", dnsmessage.TypeA, false)
	if err != nil || !slices.Equal(answers(m), []string{"10.7.0.2"}) {
		t.Errorf("A ALIAS.net: %v %v", err, answers(m))
	}
	m, err = query(t, s.Addr(), "web.", dnsmessage.TypeAAAA, false)
	if err != nil || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
		t.Errorf("AAAA of an IPv4-only container must be an empty success: %v %+v", err, m)
	}
	m, err = query(t, s.Addr(), "2.0.7.10.in-addr.arpa.", dnsmessage.TypePTR, false)
	if err != nil || !slices.Equal(answers(m), []string{"web.net."}) {
		t.Errorf("PTR: %v %v", err, answers(m))
	}
	if up.queries.Load() != 0 || own.queries.Load() != 0 {
		t.Errorf("local names were forwarded: %d, %d", up.queries.Load(), own.queries.Load())
	}

	// Unknown names go to the client's own --dns server.
	for _, tcp := range []bool{false, true} {
		m, err = query(t, s.Addr(), "example.org.", dnsmessage.TypeA, tcp)
		if err != nil || !slices.Equal(answers(m), []string{"192.0.2.77"}) {
			t.Errorf("forwarded (tcp %v): %v %v", tcp, err, answers(m))
		}
	}
	if own.queries.Load() != 2 || up.queries.Load() != 0 {
		t.Errorf("forwarded to own %d times, default %d times; want 2 and 0", own.queries.Load(), up.queries.Load())
	}
	// Without an entry of its own, a client's queries go to the defaults.
	tb.Remove("net", "c2")
	m, err = query(t, s.Addr(), "example.org.", dnsmessage.TypeA, false)
	if err != nil || !slices.Equal(answers(m), []string{"192.0.2.99"}) {
		t.Errorf("forwarded to default: %v %v", err, answers(m))
	}
}

func TestServerFailures(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	// An upstream that is not listening: a closed port on loopback.
	dead, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	dead.Close()
	s := startServer(t, Config{Table: tb, Timeout: 200 * time.Millisecond, Forward: func() []netip.AddrPort { return []netip.AddrPort{deadAddr} }})
	m, err := query(t, s.Addr(), "example.org.", dnsmessage.TypeA, false)
	if err != nil || m.RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("dead upstream: %v %v", err, m.RCode)
	}

	internal := startServer(t, Config{Table: tb, NoForward: true})
	m, err = query(t, internal.Addr(), "example.org.", dnsmessage.TypeA, false)
	if err != nil || m.RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("internal network: %v %v", err, m.RCode)
	}

	closed := startServer(t, Config{Table: tb, Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if _, err := query(t, closed.Addr(), "example.org.", dnsmessage.TypeA, false); err == nil {
		t.Error("a client outside the network got an answer")
	}

	// Garbage must not stop the server.
	c, _ := net.Dial("udp", s.Addr().String())
	for _, junk := range [][]byte{{}, {1}, make([]byte, 12), []byte("\x00\x01\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00garbage")} {
		c.Write(junk)
	}
	c.Close()
	tb.Set(Entry{Network: "net", Container: "x", Names: []string{"x"}, Addrs: []netip.Addr{ap("10.0.0.9")}})
	if m, err := query(t, s.Addr(), "x.", dnsmessage.TypeA, false); err != nil || len(m.Answers) != 1 {
		t.Errorf("after garbage: %v %+v", err, m)
	}
}

func TestServerTruncatesLargeUDPAnswers(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	for i := 0; i < 60; i++ {
		tb.Set(Entry{Network: "net", Container: fmt.Sprint(i), Names: []string{"many"}, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)})}})
	}
	s := startServer(t, Config{Table: tb})
	m, err := query(t, s.Addr(), "many.", dnsmessage.TypeA, false)
	if err != nil || !m.Truncated || len(m.Answers) != 0 {
		t.Errorf("UDP: %v truncated=%v answers=%d", err, m.Truncated, len(m.Answers))
	}
	m, err = query(t, s.Addr(), "many.", dnsmessage.TypeA, true)
	if err != nil || m.Truncated || len(m.Answers) != 60 {
		t.Errorf("TCP: %v truncated=%v answers=%d", err, m.Truncated, len(m.Answers))
	}
}

func TestServerBindsAddressNotYetAssigned(t *testing.T) {
	t.Parallel()
	// 127.0.0.0/8 is all local; an address in TEST-NET-3 is not on this
	// host, and FREEBIND must still let the server bind it.
	s, err := Listen(Config{Network: "n", Addr: ap("203.0.113.201"), Table: NewTable()})
	if err != nil {
		t.Fatalf("bind a not-yet-assigned gateway address: %v", err)
	}
	s.Close()
}
