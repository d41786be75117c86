package metrics

import "golang.org/x/sys/unix"

// ReportStartTime sets api_server.process_startup_time_us to the time since
// startUs, a CLOCK_MONOTONIC stamp in microseconds taken by whoever launched
// ember (the jailer's --start-time-us), as Firecracker does when the API
// server starts. A stamp in the future yields 0.
func (m *Metrics) ReportStartTime(startUs uint64) {
	m.APIServer.ProcessStartupTimeUs.Set(subSat(clockUs(unix.CLOCK_MONOTONIC), startUs))
}

// ReportCPUStartTime sets api_server.process_startup_time_cpu_us to the
// process CPU time spent since startCPUUs (--start-time-cpu-us) plus the
// parent's CPU time parentCPUUs (--parent-cpu-time-us, 0 when absent).
func (m *Metrics) ReportCPUStartTime(startCPUUs, parentCPUUs uint64) {
	m.APIServer.ProcessStartupTimeCPUUs.Set(
		subSat(clockUs(unix.CLOCK_PROCESS_CPUTIME_ID), startCPUUs) + parentCPUUs)
}

// clockUs reads a clock in microseconds; it cannot fail for the clocks used
// here, and reads 0 if it somehow does.
func clockUs(clock int32) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*1_000_000 + uint64(ts.Nsec)/1000
}

func subSat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
