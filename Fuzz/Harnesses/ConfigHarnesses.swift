import AIBoxCore

// The TOML documents: worker definitions, seeds, box.toml, system.toml, and the reader under them.

func fuzzTOML(_ bytes: [UInt8]) -> Verdict {
    do {
        let table = try TOMLTable(string: text(bytes))
        // Every key read has a line in the document.
        return Verdict(accepted: true, problems: linesInside(table.keys.map { table.line(of: $0) }, of: bytes, "toml"))
    } catch {
        return Verdict(accepted: false, problems: linesInside([error.position.line], of: bytes, "toml"))
    }
}

/// As `ConfigFiles.load` reads a file: valid UTF-8 only, then the definitions and the checks
/// across them (`after` names, cycles).
func fuzzWorkers(_ bytes: [UInt8]) -> Verdict {
    guard let text = String(validating: bytes, as: UTF8.self) else { return Verdict(accepted: false) }
    switch WorkerConfig.load([ConfigFile(path: "fuzz.toml", text: text)]) {
    case .failure(let errors):
        return Verdict(
            accepted: false,
            problems: linesInside(errors.errors.map(\.location.line), of: bytes, "workers")
                + errors.errors.filter { $0.location.file != "fuzz.toml" }.map { "workers: an error names \($0.location.file)" })
    case .success(let workers):
        var problems: [String] = []
        for w in workers where w.exec.isEmpty || !WorkerDefinition.isValidName(w.name) {
            problems.append("workers: accepted \(w.name) with exec \(w.exec)")
        }
        if let cycle = DependencyOrder.findCycle(workers) { problems.append("workers: accepted the cycle \(cycle)") }
        return Verdict(accepted: true, problems: problems + linesInside(workers.map(\.source.line), of: bytes, "workers"))
    }
}

/// A seed from a stick (unsigned on an unprovisioned box). What it provisions is written as
/// box.toml and read back by the daemon: that must give the same configuration.
func fuzzSeed(_ bytes: [UInt8]) -> Verdict {
    switch Seed.parse(bytes: bytes, path: "seed.toml") {
    case .failure(let errors):
        return Verdict(accepted: false, problems: linesInside(errors.errors.map(\.line), of: bytes, "seed"))
    case .success(let (config, secrets)):
        var problems = roundTrip(config, "seed")
        for name in config.secretNames where secrets[name] == nil {
            problems.append("seed: the configuration names the secret \(name), the seed gave no value")
        }
        return Verdict(accepted: true, problems: problems)
    }
}

func fuzzBox(_ bytes: [UInt8]) -> Verdict {
    switch BoxConfig.parse(text: text(bytes), path: "box.toml") {
    case .failure(let errors): return Verdict(accepted: false, problems: linesInside(errors.errors.map(\.line), of: bytes, "box"))
    case .success(let config): return Verdict(accepted: true, problems: roundTrip(config, "box"))
    }
}

/// box.toml as written reads back the same, and writing is stable.
func roundTrip(_ config: BoxConfig, _ what: String) -> [String] {
    let written = config.tomlText()
    switch BoxConfig.parse(text: written, path: "box.toml") {
    case .failure(let errors):
        return ["\(what): box.toml as written does not read back:\n\(errors)\n--- written:\n\(written)"]
    case .success(let again):
        if again != config { return ["\(what): box.toml read back differs:\n\(config)\n\(again)\n--- written:\n\(written)"] }
        if again.tomlText() != written { return ["\(what): box.toml written twice differs"] }
        return []
    }
}

func fuzzSystem(_ bytes: [UInt8]) -> Verdict {
    switch SystemDescription.parse(text(bytes), path: "system.toml") {
    case .failure(let errors):
        return Verdict(accepted: false, problems: linesInside(errors.errors.map(\.location.line), of: bytes, "system"))
    case .success(let d):
        var problems: [String] = []
        if d.slots.count != 2 || Set(d.slots.map(\.name)).count != 2 || d.slots[0].device == d.slots[1].device {
            problems.append("system: accepted the slots \(d.slots)")
        }
        if d.commitDeadline <= d.commitAfter { problems.append("system: accepted a commit deadline not after commit-after") }
        if !(1...BootEnvironment.maxTries).contains(d.bootTries) { problems.append("system: accepted boot-tries \(d.bootTries)") }
        return Verdict(accepted: true, problems: problems)
    }
}
