import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// `aibox stick-seed DEVNODE …`: what the daemon runs, as a child it reaps, when a
/// provisioning stick comes: mounting, reading, verifying and applying the seed (chpasswd,
/// networkctl) take as long as the stick and the tools take, and a seed that crashes its
/// reader crashes only this process — never the daemon's loop. One line of JSON on stdout
/// says what became of it (`StickSeed.Outcome`).
struct StickSeedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stick-seed", abstract: "Take the seed from a provisioning volume (run by the daemon).", shouldDisplay: false)

    @OptionGroup var options: RootOptions
    @Argument(help: "The volume's device node.") var devnode: String
    @Option(help: "The volume's file-system label (AIBOX or CIDATA).") var label: String = "AIBOX"
    @Option(help: "Its file-system type, as udev names it.") var fsType: String?
    @Option(help: "The Wi-Fi interface wpa_supplicant is set up for.") var wifiInterface: String = "wlan0"
    @Option(help: "The local-LLM tier (none, small, medium, large): the default chat model.") var tier: String = "none"

    func run() throws {
        let volume = ProvisioningVolume(label: label, devnode: devnode, syspath: "", fsType: fsType)
        var seed = StickSeed(paths: options.paths, wifiInterface: wifiInterface, tier: LocalLLMTier(rawValue: tier) ?? .none)
        seed.note = { writeStandardError("aibox stick-seed: \($0)\n") }
        let outcome = seed.take(volume)
        let line = (try? JSONEncoder().encode(outcome)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        writeStandardOutput(line + "\n")
    }
}
