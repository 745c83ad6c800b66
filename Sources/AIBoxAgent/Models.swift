import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Crypto
import Glibc

extension Paths {
    /// The model catalog that ships with the agent, and the owner's or integrator's additions.
    public var agentModelCatalog: String { under("usr/lib/aibox/agent/models.toml") }
    public var agentModelCatalogOverride: String { under("etc/aibox/agent/models.toml") }
}

/// Why a models command failed, and its exit code (1, or 78 for an invalid catalog).
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public var code: Int32
    public init(_ description: String, code: Int32 = AgentExit.failure) {
        self.description = description
        self.code = code
    }
}

extension ModelCatalog {
    /// The shipped catalog with the override over it; either may be absent.
    public static func load(_ paths: Paths) -> Result<ModelCatalog, ModelError> {
        var catalog = ModelCatalog()
        var problems: [String] = []
        for file in [paths.agentModelCatalog, paths.agentModelCatalogOverride] {
            guard fileExists(file) else { continue }
            do {
                let text = String(decoding: try readRegularFile(file, limit: 1 << 20), as: UTF8.self)
                switch ModelCatalog.parse(text: text, path: file) {
                case .success(let c): catalog = catalog.overridden(by: c)
                case .failure(let e): problems.append(e.description)
                }
            } catch { problems.append("\(error)") }
        }
        guard problems.isEmpty else { return .failure(ModelError(problems.joined(separator: "\n"), code: AgentExit.configuration)) }
        return .success(catalog)
    }
}

/// The models directory (`var/lib/aibox/models`, on the data partition: it survives
/// updates): `NAME.gguf` with its verified SHA-256 beside it in `NAME.gguf.sha256`
/// (sha256sum's format), `NAME.gguf.part` while it downloads, and `default.gguf`, a symbolic
/// link to the model the `llm-local` worker serves.
///
/// A `NAME.gguf.sha256` is only ever written after its file was verified and put in place, and
/// removed before that file is replaced: when it is there, it is the file's hash.
public final class ModelStore {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func file(_ name: String) -> String { directory + "/" + name + ".gguf" }
    public func hashFile(_ name: String) -> String { file(name) + ".sha256" }
    public func partFile(_ name: String) -> String { file(name) + ".part" }
    public var defaultLink: String { directory + "/default.gguf" }
    var lockFile: String { directory + "/.pull.lock" }

    /// A model on the box.
    public struct Installed: Sendable {
        public var name: String
        public var size: UInt64
        /// nil when no verified hash is beside it (a power cut between its rename and the
        /// hash file; `pull NAME` checks it again).
        public var sha256: String?
    }

    /// The `.gguf` files (regular files; `default.gguf` is the link), by name.
    public func installed() -> [Installed] {
        listDirectory(directory).sorted().compactMap { entry in
            guard entry.hasSuffix(".gguf"), entry != "default.gguf", !entry.hasPrefix(".") else { return nil }
            let name = String(entry.dropLast(5))
            guard let st = try? fileStatus(file(name), followSymlinks: false), st.st_mode & S_IFMT == S_IFREG else { return nil }
            return Installed(name: name, size: UInt64(st.st_size), sha256: recordedHash(name))
        }
    }

    /// Bytes of an unfinished download, or nil.
    public func partialBytes(_ name: String) -> UInt64? {
        guard let st = try? fileStatus(partFile(name), followSymlinks: false), st.st_mode & S_IFMT == S_IFREG else { return nil }
        return UInt64(st.st_size)
    }

    /// The hash recorded beside a model's file.
    public func recordedHash(_ name: String) -> String? {
        guard let bytes = try? readRegularFile(hashFile(name), limit: 4096, followSymlinks: false) else { return nil }
        return ModelHash.normalized(String(decoding: bytes.prefix(64), as: UTF8.self))
    }

    /// Where `default.gguf` points (the link's text) and the model of this directory it
    /// names, if it names one; nil when there is no link.
    public func defaultTarget() -> (target: String, model: String?, usable: Bool)? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(defaultLink, &buf, buf.count - 1)
        guard n > 0 else {
            // A regular file placed there by hand is a default too, of no model of ours.
            if let st = try? fileStatus(defaultLink, followSymlinks: false), st.st_mode & S_IFMT == S_IFREG {
                return (defaultLink, nil, st.st_size > 0)
            }
            return nil
        }
        let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var model: String?
        let base = target.hasPrefix(directory + "/") ? String(target.dropFirst(directory.count + 1)) : target
        if !base.contains("/"), base.hasSuffix(".gguf"), base != "default.gguf" { model = String(base.dropLast(5)) }
        let usable = (try? fileStatus(defaultLink)).map { $0.st_mode & S_IFMT == S_IFREG && $0.st_size > 0 } ?? false
        return (target, model, usable)
    }

    /// Points `default.gguf` at a model: a new link under a temporary name, renamed over the
    /// old one (at any instant the link is the old one or the new one), the directory synced.
    public func setDefault(_ name: String) throws(ModelError) {
        let temporary = directory + "/.default.gguf.new"
        removeFileBestEffort(temporary)
        do {
            try syscall("symlink", detail: temporary) { symlink(name + ".gguf", temporary) }
            try syscall("rename", detail: defaultLink) { rename(temporary, defaultLink) }
        } catch {
            removeFileBestEffort(temporary)
            throw ModelError("cannot point \(defaultLink) at \(name).gguf: \(error)")
        }
        syncDirectory(directory)
    }

    /// What a pull did.
    public struct Pulled: Sendable {
        public var name: String
        public var path: String
        public var size: UInt64
        public var sha256: String
        /// Bytes of an earlier, cut download that this one continued from.
        public var resumedFrom: UInt64
        public var alreadyPresent: Bool
        public var madeDefault: Bool
    }

    /// What a pull tells the terminal while it runs.
    public enum PullReport: Sendable {
        case progress(done: UInt64, total: UInt64?)
        case retry(DownloadRetry)
        case resuming(from: UInt64)
    }

    /// Downloads a model into `NAME.gguf.part` (continuing one a cut or a kill left), checks
    /// its size and SHA-256, and puts it in place; `makeDefault` then points `default.gguf`
    /// at it. Refused before any byte when the disk would be left with less than
    /// `DiskSpace.margin` free. One pull at a time (a lock in the directory).
    public func pull(
        _ entry: ModelEntry, makeDefault: Bool, downloader: Downloader, report: @escaping (PullReport) -> Void
    ) throws(ModelError) -> Pulled {
        if let p = ModelName.problem(entry.name) { throw ModelError(p, code: AgentExit.usage) }
        do { try makeDirectories(directory, mode: 0o755) } catch { throw ModelError("cannot create \(directory): \(error)") }
        let lock = try takeLock()
        defer { withExtendedLifetime(lock) {} }

        let name = entry.name
        var pulled = Pulled(
            name: name, path: file(name), size: entry.size ?? 0, sha256: entry.sha256, resumedFrom: 0, alreadyPresent: false,
            madeDefault: false)
        if let st = try? fileStatus(file(name), followSymlinks: false), st.st_mode & S_IFMT == S_IFREG {
            let recorded = recordedHash(name)
            if recorded == entry.sha256 || (recorded == nil && (try? hashFile(at: file(name))) == entry.sha256) {
                if recorded == nil { try writeHash(name, entry.sha256) }
                pulled.alreadyPresent = true
                pulled.size = UInt64(st.st_size)
                if makeDefault { try setDefault(name) }
                pulled.madeDefault = makeDefault
                return pulled
            }
        }

        var part = partialBytes(name) ?? 0
        if let size = entry.size, part > size {
            removeFileBestEffort(partFile(name))  // not this model's bytes: from the start
            part = 0
        }
        if let size = entry.size { try checkSpace(needed: size - part) } else { try checkSpace(needed: 0) }

        let sink: PartFileSink
        do { sink = try PartFileSink(path: partFile(name), limit: entry.size, report: report) } catch {
            throw ModelError("cannot open \(partFile(name)): \(error)")
        }
        pulled.resumedFrom = sink.position
        if sink.position > 0 { report(.resuming(from: sink.position)) }
        if entry.size == nil || sink.position < entry.size! {
            do {
                try downloader.run(into: sink) { report(.retry($0)) }
            } catch let e as DownloadError {
                // A part that is already whole: the server has nothing past its end (416).
                if !(e.status == 416 && sink.position > 0) {
                    throw ModelError("\(e); the \(sink.position) bytes downloaded are kept in \(partFile(name)): pull again to resume")
                }
            } catch let e as ModelError {
                throw e
            } catch {
                throw ModelError("\(error)")
            }
        }
        let digest: String
        do { digest = try sink.finish() } catch { throw ModelError("\(partFile(name)): \(error)") }
        if let size = entry.size, sink.position != size {
            removeFileBestEffort(partFile(name))
            throw ModelError(
                "\(entry.url) sent \(sink.position) bytes; the catalog (\(entry.source.isEmpty ? "--size" : entry.source)) says \(size): "
                    + "the download was deleted")
        }
        guard digest == entry.sha256 else {
            removeFileBestEffort(partFile(name))
            syncDirectory(directory)
            throw ModelError(
                "\(entry.url): the download's SHA-256 is \(digest), expected \(entry.sha256)\(entry.source.isEmpty ? "" : " (\(entry.source))"); "
                    + "the download was deleted, nothing was installed")
        }
        // The old hash goes before its file is replaced: a hash file always describes its file.
        removeFileBestEffort(hashFile(name))
        do {
            try syscall("rename", detail: file(name)) { rename(partFile(name), file(name)) }
        } catch {
            throw ModelError("cannot put \(file(name)) in place: \(error)")
        }
        syncDirectory(directory)
        try writeHash(name, digest)
        pulled.size = sink.position
        if makeDefault { try setDefault(name) }
        pulled.madeDefault = makeDefault
        return pulled
    }

    /// Removes a model (its file, its hash, any partial download). The model `default.gguf`
    /// points to is refused unless `force`; forced, the link goes with it.
    public func remove(_ name: String, force: Bool) throws(ModelError) -> (removedFile: Bool, removedDefault: Bool) {
        if let p = ModelName.problem(name) { throw ModelError(p, code: AgentExit.usage) }
        guard fileExists(directory) else { throw ModelError("no model \(name): there is no \(directory)") }
        let lock = try takeLock()
        defer { withExtendedLifetime(lock) {} }
        let present = (try? fileStatus(file(name), followSymlinks: false)) != nil
        let partial = partialBytes(name) != nil
        guard present || partial else {
            throw ModelError("no model \(name) in \(directory) (`aibox-agent models list` shows what is there)")
        }
        let isDefault = defaultTarget()?.model == name
        if isDefault && present && !force {
            throw ModelError(
                "\(name) is the default model (\(defaultLink) → \(name).gguf), which the local model worker serves; "
                    + "make another the default first (`aibox-agent models pull OTHER --default`) or remove it with --force")
        }
        do {
            // The hash first: a hash file left alone by a power cut would describe nothing, which is harmless.
            _ = try removeFile(hashFile(name))
            if present { _ = try removeFile(file(name)) }
            _ = try removeFile(partFile(name))
            if isDefault { _ = try removeFile(defaultLink) }
        } catch {
            throw ModelError("cannot remove \(name): \(error)")
        }
        syncDirectory(directory)
        return (present, isDefault)
    }

    /// The directory's lock: one pull (or removal) at a time.
    func takeLock() throws(ModelError) -> ProcessLock {
        let lock: ProcessLock?
        do { lock = try ProcessLock(path: lockFile) } catch { throw ModelError("cannot lock \(lockFile): \(error)") }
        guard let lock else { throw ModelError("another `aibox-agent models pull` is downloading into \(directory); wait for it to end") }
        return lock
    }

    /// Refuses a download that would leave less than the margin free.
    func checkSpace(needed: UInt64) throws(ModelError) {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else {
            throw ModelError("cannot read the free space of \(directory): \(String(cString: strerror(errno)))")
        }
        let free = UInt64(s.f_bavail) * UInt64(s.f_frsize)
        let total = UInt64(s.f_blocks) * UInt64(s.f_frsize)
        if let refusal = DiskSpace.refusal(needed: needed, free: free, total: total, directory: directory) { throw ModelError(refusal) }
    }

    func writeHash(_ name: String, _ hex: String) throws(ModelError) {
        do { try writeFileAtomically(hashFile(name), Array("\(hex)  \(name).gguf\n".utf8)) } catch {
            throw ModelError("cannot write \(hashFile(name)): \(error)")
        }
    }

    /// SHA-256 of a whole file, read in 1 MiB pieces.
    func hashFile(at path: String) throws(SystemError) -> String {
        let fd = try syscall("open", detail: path) { open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        defer { closeDescriptor(fd) }
        var hasher = SHA256()
        try PartFileSink.hashAll(fd, path: path, into: &hasher)
        return BundleLayout.hex(Array(hasher.finalize()))
    }
}

/// A download into a part file, hashed as it is written. Opened on a part file that a cut or
/// a killed pull left, it hashes the bytes already there and continues after them (the part
/// file's length is where the Range request starts).
final class PartFileSink: DownloadSink {
    let path: String
    private var fd: Int32
    private var hasher = SHA256()
    private(set) var position: UInt64 = 0
    /// Bytes written since the last fsync: every 64 MiB the part file is synced, so that a
    /// power cut loses at most that much of a long download.
    private var unsynced: UInt64 = 0
    static let syncEvery: UInt64 = 64 << 20
    /// The catalog's size: a server that sends more is not sending this model.
    let limit: UInt64?
    let report: (ModelStore.PullReport) -> Void

    init(path: String, limit: UInt64?, report: @escaping (ModelStore.PullReport) -> Void) throws(SystemError) {
        self.path = path
        self.limit = limit
        self.report = report
        fd = try syscall("open", detail: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644) }
        do {
            position = try PartFileSink.hashAll(fd, path: path, into: &hasher)
        } catch {
            closeDescriptor(fd)
            throw error
        }
    }

    deinit { if fd >= 0 { closeDescriptor(fd) } }

    /// Hashes from the descriptor's offset to its end; returns the bytes read (the offset is
    /// then the end: writes continue there).
    @discardableResult
    static func hashAll(_ fd: Int32, path: String, into hasher: inout SHA256) throws(SystemError) -> UInt64 {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: UInt64 = 0
        while true {
            let n = try syscall("read", detail: path) { read(fd, &buffer, buffer.count) }
            if n == 0 { return total }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            total += UInt64(n)
        }
    }

    func consume(_ bytes: UnsafeRawBufferPointer) throws {
        if let limit, position + UInt64(bytes.count) > limit {
            throw ModelError("the server sent more than the catalog's \(limit) bytes: not this model's file")
        }
        do {
            try writeAll(fd, bytes)
        } catch {
            if error.errno == ENOSPC || error.errno == EDQUOT {
                throw ModelError(
                    "the disk filled up while downloading (\(error.reason)) at byte \(position); the part file \(path) is kept: "
                        + "free space and pull again to resume")
            }
            throw ModelError("writing \(path) at byte \(position): \(error.reason)")
        }
        hasher.update(bufferPointer: bytes)
        position += UInt64(bytes.count)
        unsynced += UInt64(bytes.count)
        if unsynced >= PartFileSink.syncEvery {
            unsynced = 0
            _ = try? syscall("fsync", detail: path) { fsync(fd) }
        }
        report(.progress(done: position, total: limit))
    }

    func startOver() throws {
        do {
            try syscall("ftruncate", detail: path) { ftruncate(fd, 0) }
            try syscall("lseek", detail: path) { lseek(fd, 0, SEEK_SET) }
        } catch {
            throw ModelError("cannot start \(path) over: \(error)")
        }
        hasher = SHA256()
        position = 0
    }

    /// fsync; the SHA-256 of everything written, as hex.
    func finish() throws(SystemError) -> String {
        try syscall("fsync", detail: path) { fsync(fd) }
        closeDescriptor(fd)
        fd = -1
        return BundleLayout.hex(Array(hasher.finalize()))
    }
}
