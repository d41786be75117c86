package cli

import (
	"io"
	"os"

	"github.com/ember-vmm/ember/internal/logger"
)

// Process exit codes, Firecracker's FcExitCode table.
const (
	ExitOK               = 0   // success, including a guest reboot
	ExitGenericError     = 1   // any error without a code of its own
	ExitUnexpectedError  = 2   // cannot happen if the program logic is sound
	ExitBadSyscall       = 148 // a seccomp filter caught a forbidden system call
	ExitSIGBUS           = 149 // shut down after intercepting SIGBUS
	ExitSIGSEGV          = 150 // shut down after intercepting SIGSEGV
	ExitSIGXFSZ          = 151 // shut down after intercepting SIGXFSZ
	ExitBadConfiguration = 152 // bad configuration, such as an invalid --level
	ExitArgParsing       = 153 // command line arguments parsing error
	ExitSIGXCPU          = 154 // shut down after intercepting SIGXCPU
	ExitSIGPIPE          = 155 // SIGPIPE (Firecracker counts it and carries on)
	ExitSIGHUP           = 156 // shut down after intercepting SIGHUP
	ExitSIGILL           = 157 // shut down after intercepting SIGILL
)

// ExitAborted is the status a shell reports (128+SIGABRT) for a process
// killed by SIGABRT, which is how Firecracker ends on a panic: it is built
// with panic=abort. It is not in Firecracker's table; Terminate ends the
// process by the signal itself and uses this code only as a fallback.
const ExitAborted = 134

const defaultLogID = logger.DefaultInstanceID

// Exit says how the process ends instead of running: what goes to stdout and
// stderr, what is logged, and the exit code.
type Exit struct {
	Code   int    // exit status (ExitAborted when Abort)
	Stdout string // written verbatim to stdout
	Stderr string // written verbatim to stderr
	// Log is an error message Firecracker writes through its logger, which at
	// this point still targets stdout; "" if none.
	Log string
	// Abort reports that Firecracker panics here and dies by SIGABRT rather
	// than exiting; Stderr then holds ember's one-line explanation, which
	// Firecracker does not print.
	Abort bool

	logID string // instance id the log lines carry
}

func abortExit(logID, stderrLine, payload string) *Exit {
	return &Exit{
		Code:   ExitAborted,
		Stderr: stderrLine + "\n",
		Log:    "Firecracker panicked: " + payload,
		Abort:  true,
		logID:  logID,
	}
}

// Emit writes e's output in Firecracker's order, including its log lines
// (in Firecracker's log format, to stdout, since no --log-path is in effect
// yet): the output, the error message, stderr, then "Firecracker exiting
// successfully. exit_code=0" or "Firecracker exiting with error.
// exit_code=N" (nothing after an abort).
func (e *Exit) Emit(stdout, stderr io.Writer) {
	id := e.logID
	if id == "" {
		id = defaultLogID
	}
	log := logger.New(id, stdout).Thread("main")
	io.WriteString(stdout, e.Stdout)
	if e.Log != "" {
		log.Errorf("%s", e.Log)
	}
	io.WriteString(stderr, e.Stderr)
	switch {
	case e.Abort:
	case e.Code == ExitOK:
		log.Infof("Firecracker exiting successfully. exit_code=0")
	default:
		log.Errorf("Firecracker exiting with error. exit_code=%d", e.Code)
	}
}

// Terminate ends the process as Firecracker would: exit with Code, or, for
// an abort, die by SIGABRT (the exit status then is the signal's).
func (e *Exit) Terminate() {
	if e.Abort {
		abortProcess()
	}
	os.Exit(e.Code)
}
