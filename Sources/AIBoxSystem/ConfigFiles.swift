import AIBoxCore
import Glibc

/// Reads the worker definition files: vendor (`usr/lib/aibox/workers.d`) then local
/// (`etc/aibox/workers.d`); a local file of the same name replaces the vendor one.
public enum ConfigFiles {
    /// A worker file is at most this long.
    public static let maxBytes = 1 << 20

    /// The definitions, and the entries that are no worker file at all — a FIFO, a
    /// directory, a device node, a file over 1 MiB — skipped so that the others run (the
    /// caller reports them). A file that is there but cannot be read, or whose text is wrong,
    /// fails the whole load: a half-read configuration is never run.
    public static func load(_ paths: Paths) -> (result: Result<[WorkerDefinition], ConfigErrors>, skipped: [FileReadError]) {
        var chosen: [String: String] = [:]
        for dir in [paths.vendorWorkers, paths.localWorkers] {
            for name in listDirectory(dir) where name.hasSuffix(".toml") && !name.hasPrefix(".") {
                chosen[name] = dir + "/" + name
            }
        }
        var files: [ConfigFile] = []
        var errors: [ConfigError] = []
        var skipped: [FileReadError] = []
        for name in chosen.keys.sorted() {
            let path = chosen[name]!
            let bytes: [UInt8]
            do {
                bytes = try readRegularFile(path, limit: maxBytes)
            } catch {
                switch error {
                case .notRegular, .tooLarge: skipped.append(error)
                case .cannotOpen, .readFailed: errors.append(ConfigError(file: path, line: nil, key: nil, message: error.reason))
                }
                continue
            }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                errors.append(ConfigError(file: path, line: nil, key: nil, message: "is not valid UTF-8"))
                continue
            }
            files.append(ConfigFile(path: path, text: text))
        }
        if !errors.isEmpty {
            if case .failure(let more) = WorkerConfig.load(files) { errors += more.errors }
            return (.failure(ConfigErrors(errors)), skipped)
        }
        return (WorkerConfig.load(files), skipped)
    }
}
