package process

// A replica leads its own process group, in ebb's session: not a session
// of its own, because Linux's scheduler autogroups put each session in a
// group of its own, and a replica in another autogroup than the gateway
// that feeds it costs the data plane about a third of its throughput when
// they share CPUs (measured with the bench's proxy scenario). What a
// replica starts either stays in its group or, like the http engine's
// command, makes a group of its own; every one of them carries the
// replica's marker in its environment (EBB_REPLICA_ID=<id>, inherited),
// unless a process clears it on purpose. Killing a replica's tree means
// killing its group and every process that carries its marker.
//
// PIDs are reused, so a process is killed only when it is verifiably part of
// the tree: it started no earlier than the replica (start time,
// /proc/PID/stat field 22), and either it carries the marker, or it is in
// the replica's group while the leader is still unreaped (our own child,
// alive or a zombie: its PID, and so its group ID, cannot be reused).

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReplicaIDEnv names the environment variable that marks every process of a
// replica's tree with the replica's ID.
const ReplicaIDEnv = "EBB_REPLICA_ID"

// procStat is what /proc/PID/stat says about a process.
type procStat struct {
	state     byte   // field 3: R, S, Z, ...
	pgrp      int    // field 5
	session   int    // field 6
	startTime uint64 // field 22, clock ticks since boot
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may contain spaces and parentheses;
	// the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3; field N is f[N-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	st := procStat{state: f[0][0]}
	if st.pgrp, err = strconv.Atoi(f[2]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	if st.session, err = strconv.Atoi(f[3]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	if st.startTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// procStartTime reads field 22 of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	return st.startTime, err
}

// tree names a replica's process tree.
type tree struct {
	id        string // the replica ID, its environment marker
	leader    int    // the replica's PID: its session and process group ID
	startTime uint64 // the leader's start time; 0 when unknown
	// held says the leader is our unreaped child, so its PID (and session
	// ID) cannot name anything else.
	held bool
}

// members lists the live processes that verifiably belong to t.
func (t tree) members() []int {
	if !t.held {
		// When a process runs under the leader's PID, it is either the
		// leader or a stranger that got the PID after the tree emptied.
		if st, err := readProcStat(t.leader); err == nil && t.startTime != 0 && st.startTime != t.startTime {
			return nil
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if t.belongs(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// belongs reports whether pid is a live member of t.
func (t tree) belongs(pid int) bool {
	st, err := readProcStat(pid)
	if err != nil || st.state == 'Z' || st.startTime < t.startTime {
		return false
	}
	// The session too: replicas of earlier versions led a session.
	inGroup := st.session == t.leader || st.pgrp == t.leader
	if pid == t.leader {
		return inGroup && (t.startTime == 0 || st.startTime == t.startTime)
	}
	return (t.held && inGroup) || hasMarker(pid, t.id)
}

// hasMarker reports whether pid's environment marks it as part of replica
// id's tree.
func hasMarker(pid int, id string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	want := []byte(ReplicaIDEnv + "=" + id)
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// kill sends SIGKILL to every process of t and returns how many it
// signalled. Each one is signalled through a pidfd opened after it was
// verified, and verified again once the pidfd is open, so a PID reused in
// between is never signalled.
func (t tree) kill() int {
	if t.held {
		// The group is the bulk of the tree and its ID is pinned.
		_ = syscall.Kill(-t.leader, syscall.SIGKILL)
	}
	n := 0
	// Processes may fork while they are being killed; a few passes
	// catch the children of those that were between fork and death.
	for range 3 {
		pids := t.members()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if signalVerified(pid, t) {
				n++
			}
		}
	}
	return n
}

func signalVerified(pid int, t tree) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if !t.belongs(pid) {
		return false
	}
	err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	return err == nil
}
