import AIBoxSystem
import ArgumentParser
import Glibc

extension AIBox {
    /// argument-parser exits 64 (EX_USAGE) on a usage error; the contract says 2, so that
    /// scripts tell usage errors (2) from failures (1) and a stopped daemon (3).
    static func main() {
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
