// Package dns is berth's embedded resolver: one small DNS server per
// network, listening on the network's gateway address, that answers A,
// AAAA and PTR queries for the containers on the network (by container
// name and alias, as Docker's embedded DNS does) and forwards every other
// query to upstream resolvers. Messages are parsed and built with
// golang.org/x/net/dns/dnsmessage; forwarded queries travel unchanged.
package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Entry is one container's names and addresses on one network.
type Entry struct {
	Network string
	// Container identifies the container across networks (for example
	// "namespace/id"): a client sees the names of every network its
	// container is on.
	Container string
	Names     []string
	Addrs     []netip.Addr
	// Upstreams are the servers this container's other queries go to
	// (its --dns servers); empty means the server's defaults.
	Upstreams []netip.AddrPort
}

type entryKey struct{ network, container string }

// index maps a network and a key (a name or an address) to entries.
type index[K comparable] map[string]map[K][]*Entry

func (ix index[K]) add(network string, k K, e *Entry) {
	m := ix[network]
	if m == nil {
		m = map[K][]*Entry{}
		ix[network] = m
	}
	m[k] = append(m[k], e)
}

func (ix index[K]) remove(network string, k K, e *Entry) {
	m := ix[network]
	list := m[k]
	for i, x := range list {
		if x == e {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(m, k)
	} else {
		m[k] = list
	}
	if len(m) == 0 {
		delete(ix, network)
	}
}

// Table holds the entries of every network. It is safe for concurrent
// use; servers read it on every query.
type Table struct {
	mu       sync.RWMutex
	entries  map[entryKey]*Entry
	byName   index[string]
	byAddr   index[netip.Addr]
	networks map[string][]string // container -> its networks
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		entries:  map[entryKey]*Entry{},
		byName:   index[string]{},
		byAddr:   index[netip.Addr]{},
		networks: map[string][]string{},
	}
}

// Set adds or replaces the entry of e.Container on e.Network.
func (t *Table) Set(e Entry) {
	c := e
	c.Names = make([]string, 0, len(e.Names))
	for _, n := range e.Names {
		if n = canonical(n); n != "" && !slices.Contains(c.Names, n) {
			c.Names = append(c.Names, n)
		}
	}
	c.Addrs = slices.Clone(e.Addrs)
	c.Upstreams = slices.Clone(e.Upstreams)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(e.Network, e.Container)
	t.entries[entryKey{e.Network, e.Container}] = &c
	for _, n := range c.Names {
		t.byName.add(c.Network, n, &c)
	}
	for _, a := range c.Addrs {
		t.byAddr.add(c.Network, a, &c)
	}
	t.networks[c.Container] = append(t.networks[c.Container], c.Network)
}

// Remove drops the entry of container on network.
func (t *Table) Remove(network, container string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(network, container)
}

func (t *Table) removeLocked(network, container string) {
	k := entryKey{network, container}
	e := t.entries[k]
	if e == nil {
		return
	}
	delete(t.entries, k)
	for _, n := range e.Names {
		t.byName.remove(network, n, e)
	}
	for _, a := range e.Addrs {
		t.byAddr.remove(network, a, e)
	}
	nets := slices.DeleteFunc(t.networks[container], func(n string) bool { return n == network })
	if len(nets) == 0 {
		delete(t.networks, container)
	} else {
		t.networks[container] = nets
	}
}

// canonical lower-cases a name and drops its final dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// visible returns the networks whose names a client at src on network
// sees: network first, then the other networks of the client's
// container.
func (t *Table) visible(network string, src netip.Addr) []string {
	nets := []string{network}
	if c := t.client(network, src); c != nil {
		for _, n := range t.networks[c.Container] {
			if !slices.Contains(nets, n) {
				nets = append(nets, n)
			}
		}
	}
	return nets
}

// client returns the entry of the container at src on network, or nil.
func (t *Table) client(network string, src netip.Addr) *Entry {
	if list := t.byAddr[network][src]; len(list) > 0 {
		return list[0]
	}
	return nil
}

// Lookup returns the addresses of name as the client at src on network
// sees it. found is false when no container has the name, so the query
// should be forwarded. A name may also be asked for as
// "<name>.<network>".
func (t *Table) Lookup(network string, src netip.Addr, name string) (addrs []netip.Addr, found bool) {
	name = canonical(name)
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, n := range t.visible(network, src) {
		want := name
		if short, ok := strings.CutSuffix(name, "."+strings.ToLower(n)); ok {
			want = short
		}
		list := t.byName[n][want]
		for _, e := range list {
			addrs = append(addrs, e.Addrs...)
		}
		if len(list) > 0 {
			return addrs, true
		}
	}
	return nil, false
}

// Reverse returns the names of the container holding addr on a network
// the client at src sees: "<name>.<network>" and the bare name.
func (t *Table) Reverse(network string, src, addr netip.Addr) ([]string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, n := range t.visible(network, src) {
		for _, e := range t.byAddr[n][addr] {
			if len(e.Names) > 0 {
				return []string{e.Names[0] + "." + strings.ToLower(n), e.Names[0]}, true
			}
		}
	}
	return nil, false
}

// Upstreams returns the forwarders of the client at src on network, nil
// when it has none of its own.
func (t *Table) Upstreams(network string, src netip.Addr) []netip.AddrPort {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.client(network, src); e != nil {
		return e.Upstreams
	}
	return nil
}
