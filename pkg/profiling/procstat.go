package profiling

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// statFields returns the fields of process pid's /proc/PID/stat that
// follow its command: the command (field 2) is in parentheses and may hold
// spaces, so the fields are cut after its last ')'. The first one returned
// is field 3 (the state): field n of proc(5) is statFields(pid)[n-3]. Nil
// when the process does not run.
func statFields(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// statField is field n (numbered as in proc(5)) of fields, "" when
// missing.
func statField(fields []string, n int) string {
	if n-3 < 0 || n-3 >= len(fields) {
		return ""
	}
	return fields[n-3]
}

// ProcessStart is the start time of process pid (field 22 of its stat, in
// clock ticks since boot), "" when it does not run: with its PID it names
// one process, not another that reused the PID.
func ProcessStart(pid int) string { return statField(statFields(pid), 22) }

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// cpuSeconds is the CPU time (user and system: fields 14 and 15) of
// process pid, in seconds; 0 when it cannot be read.
func cpuSeconds(pid int) float64 {
	f := statFields(pid)
	utime, err1 := strconv.ParseUint(statField(f, 14), 10, 64)
	stime, err2 := strconv.ParseUint(statField(f, 15), 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return float64(utime+stime) / userHZ
}
