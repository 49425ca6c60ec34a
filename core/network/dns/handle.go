package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// handle answers one query message; nil means send nothing.
func (s *Server) handle(msg []byte, src netip.Addr, tcp bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	if h.OpCode != 0 {
		return build(h, nil, dnsmessage.RCodeNotImplemented, nil, defaultUDPMax)
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return build(h, nil, dnsmessage.RCodeFormatError, nil, defaultUDPMax)
	}
	q := qs[0]
	limit := 65535
	if !tcp {
		limit = udpLimit(&p)
	}
	if q.Class == dnsmessage.ClassINET {
		if resp, ok := s.answer(h, q, src, limit); ok {
			return resp
		}
	}
	if s.cfg.NoForward {
		return build(h, &q, dnsmessage.RCodeServerFailure, nil, limit)
	}
	if resp := s.forward(msg, h.ID, src, tcp); resp != nil {
		return resp
	}
	return build(h, &q, dnsmessage.RCodeServerFailure, nil, limit)
}

// udpLimit is the largest UDP answer the client takes: 512 bytes, or the
// size its EDNS OPT record advertises.
func udpLimit(p *dnsmessage.Parser) int {
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return defaultUDPMax
	}
	for {
		ah, err := p.AdditionalHeader()
		if err != nil {
			return defaultUDPMax
		}
		if ah.Type == dnsmessage.TypeOPT && int(ah.Class) > defaultUDPMax {
			return int(ah.Class)
		}
		if p.SkipAdditional() != nil {
			return defaultUDPMax
		}
	}
}

// answer answers from the table; ok is false when the name is not a
// container's and the query should be forwarded.
func (s *Server) answer(h dnsmessage.Header, q dnsmessage.Question, src netip.Addr, limit int) ([]byte, bool) {
	name := q.Name.String()
	if q.Type == dnsmessage.TypePTR {
		addr, ok := parseReverse(name)
		if !ok {
			return nil, false
		}
		names, found := s.cfg.Table.Reverse(s.cfg.Network, src, addr)
		if !found {
			return nil, false
		}
		ptr, err := dnsmessage.NewName(names[0] + ".")
		if err != nil {
			return nil, false
		}
		return build(h, &q, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) error {
			return b.PTRResource(rrHeader(q), dnsmessage.PTRResource{PTR: ptr})
		}, limit), true
	}
	addrs, found := s.cfg.Table.Lookup(s.cfg.Network, src, name)
	if !found {
		return nil, false
	}
	// A known name with no address of the asked type (AAAA of an IPv4
	// container, MX, ...) gets an empty answer, not a forward: the name
	// is the container's.
	return build(h, &q, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) error {
		for _, a := range addrs {
			var err error
			switch {
			case q.Type == dnsmessage.TypeA && a.Is4():
				err = b.AResource(rrHeader(q), dnsmessage.AResource{A: a.As4()})
			case q.Type == dnsmessage.TypeAAAA && a.Is6() && !a.Is4In6():
				err = b.AAAAResource(rrHeader(q), dnsmessage.AAAAResource{AAAA: a.As16()})
			}
			if err != nil {
				return err
			}
		}
		return nil
	}, limit), true
}

func rrHeader(q dnsmessage.Question) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: answerTTL}
}

// build makes a response to h. When the answers do not fit in limit
// bytes, it answers with none and the TC bit, so the client retries over
// TCP.
func build(h dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode, answers func(*dnsmessage.Builder) error, limit int) []byte {
	out, err := buildOnce(h, q, rcode, answers, false)
	if err == nil && len(out) <= limit {
		return out
	}
	out, err = buildOnce(h, q, rcode, nil, err == nil)
	if err != nil {
		slog.Debug("dns: build response", "error", err)
		return nil
	}
	return out
}

func buildOnce(h dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode, answers func(*dnsmessage.Builder) error, truncated bool) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		Authoritative:      rcode == dnsmessage.RCodeSuccess,
		Truncated:          truncated,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
		RCode:              rcode,
	})
	b.EnableCompression()
	if q != nil {
		if err := b.StartQuestions(); err != nil {
			return nil, err
		}
		if err := b.Question(*q); err != nil {
			return nil, err
		}
	}
	if answers != nil {
		if err := b.StartAnswers(); err != nil {
			return nil, err
		}
		if err := answers(&b); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// parseReverse turns "4.3.2.1.in-addr.arpa." or a 32-nibble
// "….ip6.arpa." name into the address it stands for.
func parseReverse(name string) (netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		parts := strings.Split(v4, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 8)
			if err != nil || (len(p) > 1 && p[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		parts := strings.Split(v6, ".")
		if len(parts) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 16, 4)
			if err != nil || len(p) != 1 {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(n) << 4
			} else {
				b[pos/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// forward sends the query unchanged to the client's upstream servers in
// turn and returns the first answer, or nil when none answered.
func (s *Server) forward(msg []byte, id uint16, src netip.Addr, tcp bool) []byte {
	ups := s.cfg.Table.Upstreams(s.cfg.Network, src)
	if len(ups) == 0 && s.cfg.Forward != nil {
		ups = s.cfg.Forward()
	}
	own := s.Addr()
	for _, u := range ups {
		// A container naming its own gateway with --dns would loop.
		if u.Addr().Unmap() == own.Addr() && u.Port() == own.Port() {
			continue
		}
		resp, err := s.exchange(u, msg, id, tcp)
		if err == nil {
			return resp
		}
		slog.Debug("dns: upstream failed", "network", s.cfg.Network, "upstream", u, "error", err)
	}
	return nil
}

func (s *Server) exchange(u netip.AddrPort, msg []byte, id uint16, tcp bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, u.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if tcp {
		if err := writeTCPMessage(c, msg); err != nil {
			return nil, err
		}
		resp, err := readTCPMessage(c)
		if err != nil {
			return nil, err
		}
		return resp, checkReply(resp, id)
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Stray datagrams (late answers to another query) are skipped.
		if checkReply(buf[:n], id) == nil {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func checkReply(resp []byte, id uint16) error {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return fmt.Errorf("bad reply: %w", err)
	}
	if !h.Response || h.ID != id {
		return errors.New("reply does not match the query")
	}
	return nil
}
