package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

var _ hypervisor.DeviceStatser = (*machine)(nil)

// DeviceStats reads QEMU's block statistics and the taps' kernel counters.
// The tap counts from the host's side, so its received bytes are what the
// guest transmitted.
func (m *machine) DeviceStats(ctx context.Context) (hypervisor.DeviceStats, error) {
	st := hypervisor.DeviceStats{Block: map[string]hypervisor.BlockStats{}, Net: map[string]hypervisor.NetStats{}}
	var blocks []struct {
		QDev  string `json:"qdev"`
		Stats struct {
			RdBytes uint64 `json:"rd_bytes"`
			WrBytes uint64 `json:"wr_bytes"`
			RdOps   uint64 `json:"rd_operations"`
			WrOps   uint64 `json:"wr_operations"`
			FlushOp uint64 `json:"flush_operations"`
		} `json:"stats"`
	}
	if err := m.run(ctx, "query-blockstats", nil, &blocks); err != nil {
		return st, err
	}
	for _, b := range blocks {
		for i, d := range m.plan.drives {
			if d.VhostUser {
				continue // counted by ember's device
			}
			// QEMU names the device by its id, or by its QOM path.
			name := "blk" + strconv.Itoa(i)
			if b.QDev == name || strings.Contains(b.QDev, "/"+name+"/") {
				st.Block[d.ID] = hypervisor.BlockStats{
					ReadBytes: b.Stats.RdBytes, WriteBytes: b.Stats.WrBytes,
					ReadCount: b.Stats.RdOps, WriteCount: b.Stats.WrOps, FlushCount: b.Stats.FlushOp,
				}
			}
		}
	}
	m.godevs.stats(&st)
	for id, tap := range m.taps {
		if _, ok := st.Net[id]; ok {
			continue // counted by ember's device
		}
		read := func(name string) uint64 {
			b, _ := os.ReadFile(filepath.Join("/sys/class/net", tap, "statistics", name))
			v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
		st.Net[id] = hypervisor.NetStats{
			RxBytes: read("tx_bytes"), RxPackets: read("tx_packets"),
			TxBytes: read("rx_bytes"), TxPackets: read("rx_packets"),
		}
	}
	return st, nil
}
