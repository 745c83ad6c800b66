import AIBoxCore
import AIBoxSystem
import ArgumentParser
import Glibc

/// `aibox factory-reset [--yes]`: back to unprovisioned.
struct FactoryReset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "factory-reset",
        abstract: "Forget the box's configuration and secrets; setup starts again.",
        discussion: """
            Removes etc/aibox/box.toml, every secret, the setup journal, local worker definitions \
            (etc/aibox/workers.d) and the network, SSH and Wi-Fi files setup wrote. Keeps the event \
            history (marked) and the update version floor. Refused while an update is installed. \
            With --reboot the box then restarts, and its consoles ask setup's questions again.
            """)
    @OptionGroup var options: RootOptions
    @Flag(help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Reboot when done: the box starts as it left the factory, setup on its consoles.") var reboot = false

    func run() throws {
        do {
            try options.requireWritableRoot()
            let paths = options.paths
            try makeDirectories(paths.runDirectory)
            // The installer holds this lock for as long as it writes a slot.
            guard let updateLock = try ProcessLock(path: paths.updateLock) else {
                throw CLIError("an update is being installed; factory-reset is refused until it has finished (aibox update status)")
            }
            defer { withExtendedLifetime(updateLock) {} }
            guard let setupLock = try ProcessLock(path: paths.under("run/aibox/setup.lock")) else {
                throw CLIError("aibox setup is running; stop it first")
            }
            defer { withExtendedLifetime(setupLock) {} }
            if !yes {
                writeStandardOutput(
                    "This erases the box's configuration, secrets and local worker definitions; "
                        + "the event history stays.\nType yes to reset: ")
                guard readLine(strippingNewline: true)?.lowercased() == "yes" else {
                    writeStandardOutput("Nothing changed.\n")
                    throw ExitCode(ExitCodes.failure)
                }
            }
            let journal = try? SetupJournal(path: paths.database)
            do {
                try Provisioner(paths: paths).factoryReset()
            } catch {
                throw CLIError("factory reset stopped half-way: \(error); the box is unprovisioned, run factory-reset again to finish")
            }
            try? journal?.clear()
            journal?.record(
                "setup.factory-reset",
                "factory reset: configuration and secrets erased; the events before this one are the previous setup's")
            Setup.tellDaemon(paths)
            guard reboot else {
                print("The box is unprovisioned: run aibox setup (or insert a stick labelled AIBOX with aibox-seed.toml).")
                return
            }
            guard paths.root == "/" else {
                print("The box is unprovisioned; under --root nothing reboots.")
                return
            }
            print("The box is unprovisioned; rebooting into setup.")
            let status = runProgram(["/usr/bin/systemctl", "reboot"], input: nil)
            guard status == 0 else {
                throw CLIError("the box is unprovisioned, but systemctl reboot \(status.map { "exited with \($0)" } ?? "could not be started"); reboot it to start setup")
            }
        } catch let e as CLIError {
            fail(e)
        }
    }
}
