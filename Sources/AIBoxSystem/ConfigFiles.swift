import AIBoxCore
import Glibc

/// Reads the worker definition files: vendor (`usr/lib/aibox/workers.d`) then local
/// (`etc/aibox/workers.d`); a local file of the same name replaces the vendor one.
public enum ConfigFiles {
    public static func load(_ paths: Paths) -> Result<[WorkerDefinition], ConfigErrors> {
        var chosen: [String: String] = [:]
        for dir in [paths.vendorWorkers, paths.localWorkers] {
            for name in listDirectory(dir) where name.hasSuffix(".toml") && !name.hasPrefix(".") {
                chosen[name] = dir + "/" + name
            }
        }
        var files: [ConfigFile] = []
        var errors: [ConfigError] = []
        for name in chosen.keys.sorted() {
            let path = chosen[name]!
            guard let bytes = readSmallFile(path, limit: 1 << 20) else {
                errors.append(ConfigError(file: path, line: nil, key: nil, message: "cannot be read: \(String(cString: strerror(errno)))"))
                continue
            }
            guard bytes.count < 1 << 20 else {
                errors.append(ConfigError(file: path, line: nil, key: nil, message: "is larger than 1 MiB; worker files are small"))
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
            return .failure(ConfigErrors(errors))
        }
        return WorkerConfig.load(files)
    }
}
