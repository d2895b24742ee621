package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat. The kernel fixes USER_HZ at 100 for
// user space on every architecture Go supports, whatever its internal HZ.
const userHZ = 100

// procSample is one reading of a process's CPU time and resident memory.
type procSample struct {
	at  time.Time
	cpu time.Duration // user + system
	rss int64         // bytes
	err error
}

// sampleProc reads /proc/PID/stat and /proc/PID/status.
func sampleProc(pid int) procSample {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		s.err = fmt.Errorf("read cpu of pid %d: %w", pid, err)
		return s
	}
	if s.cpu, err = parseProcStatCPU(stat); err != nil {
		s.err = fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		return s
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		s.err = fmt.Errorf("read memory of pid %d: %w", pid, err)
		return s
	}
	if s.rss, err = parseProcStatusRSS(status); err != nil {
		s.err = fmt.Errorf("parse /proc/%d/status: %w", pid, err)
	}
	return s
}

var errProcFormat = errors.New("unexpected format")

// parseProcStatCPU returns utime+stime from the contents of /proc/PID/stat (proc(5)). The command
// name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
func parseProcStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errProcFormat
	}
	// Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 13 {
		return 0, errProcFormat
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errProcFormat, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseProcStatusRSS returns VmRSS in bytes from the contents of /proc/PID/status.
func parseProcStatusRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, errProcFormat
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errProcFormat, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS line", errProcFormat)
}

// selfUsage is the load tool's own CPU time and peak resident memory, from getrusage(2).
type selfUsage struct {
	at     time.Time
	cpu    time.Duration
	maxRSS int64 // bytes
}

func sampleSelf() selfUsage {
	u := selfUsage{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return u
	}
	u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	u.maxRSS = int64(ru.Maxrss) * 1024 // kilobytes on Linux
	return u
}
