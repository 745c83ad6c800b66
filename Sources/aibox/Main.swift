import AIBoxSystem
import ArgumentParser
import Glibc

extension AIBox {
    /// argument-parser exits 64 (EX_USAGE) on a usage error; the contract says 2, so that
    /// scripts tell usage errors (2) from failures (1) and a stopped daemon (3).
    static func main() {
        openStandardDescriptors()
        resetInheritedSignals()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                writeStandardError(fullMessage(for: error) + "\n")
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// A parent (a test harness, a script, a service manager) may leave signals blocked or
/// ignored, and both survive exec: a command that inherits a blocked or ignored SIGTERM
/// cannot be stopped. Every command starts with an empty mask and the default action for
/// the signals it relies on (SIGCHLD too: ignored, it would reap our children before
/// waitpid). SIGHUP stays as inherited (nohup). `aibox daemon` then blocks its own set for
/// signalfd on purpose.
func resetInheritedSignals() {
    for sig in [SIGTERM, SIGINT, SIGCHLD] { setSignalAction(sig, SIG_DFL) }
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
}
