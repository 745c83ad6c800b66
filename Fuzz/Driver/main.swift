import AIBoxFuzzHarnesses
import AIBoxSystem
import Glibc

#if FUZZING
    import CLibFuzzer
#endif

// aibox-fuzz HARNESS [ARGS...]
//
// Built with -sanitize=fuzzer,address -D FUZZING (Fuzz/run): libFuzzer with ARGS (flags and
// corpus directories), each input through HARNESS. Built plainly (swift build): replays
// ARGS (files or directories of inputs) through HARNESS and says which input broke what.

let arguments = CommandLine.arguments
guard arguments.count >= 2, let harness = Harness.named(arguments[1]) else {
    var usage = "usage: aibox-fuzz HARNESS [libFuzzer flags] [corpus directories or inputs]\nharnesses:\n"
    for h in Harness.all { usage += "  \(h.name.padding(15))\(h.summary)\n" }
    writeStandardError(usage)
    exit(2)
}

extension String {
    fileprivate func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(width - count, 1)) }
}

#if FUZZING
    let selected = harness

    let callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32 = { data, size in
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        let problems = selected.run(bytes).problems
        if !problems.isEmpty {
            // A broken promise is a finding like a crash: libFuzzer saves the input on abort.
            writeStandardError("aibox-fuzz \(selected.name): \(problems.joined(separator: "\n"))\n")
            abort()
        }
        return 0
    }

    // libFuzzer sees the program name and everything after the harness.
    var argv: [UnsafeMutablePointer<CChar>?] = ([arguments[0]] + arguments.dropFirst(2)).map { strdup($0) } + [nil]
    var argc = Int32(argv.count - 1)
    let status = argv.withUnsafeMutableBufferPointer { buffer in
        var base = buffer.baseAddress
        return LLVMFuzzerRunDriver(&argc, &base, callback)
    }
    exit(status)
#else
    var failed = 0, accepted = 0
    let inputs = corpusInputs(arguments.dropFirst(2).filter { !$0.hasPrefix("-") })
    for (path, bytes) in inputs {
        let verdict = harness.run(bytes)
        if verdict.accepted { accepted += 1 }
        let problems = verdict.problems
        if !problems.isEmpty {
            failed += 1
            writeStandardOutput("\(path): \(problems.joined(separator: "\n  "))\n")
        }
    }
    writeStandardOutput("\(harness.name): \(inputs.count) inputs, \(accepted) accepted, \(failed) with problems\n")
    exit(failed == 0 ? 0 : 1)
#endif
