import Foundation

/// Threads of the tests' own for the tests that run the agent's async code in process (the
/// channels' connections, the assistant). Swift Testing runs the synchronous tests — those that
/// start a daemon and wait for it — on the same cooperative threads as async code, one per core:
/// two of them waiting block every async task in the process, and a channel's poll then "takes"
/// a minute. On these threads (a task executor preference) such tests do not wait on the others.
final class TestThreads: TaskExecutor, @unchecked Sendable {
    static let shared = TestThreads(count: 4)
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init(count: Int) {
        for i in 0..<count {
            let t = Thread { [unowned self] in self.work() }
            t.name = "aibox-test-\(i)"
            t.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let j = UnownedJob(job)
        condition.lock()
        jobs.append(j)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let j = jobs.removeFirst()
            condition.unlock()
            j.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs `body`, and every task it makes that inherits (child tasks, task groups, actors without
/// an executor of their own), on `TestThreads`.
func onTestThreads<T>(_ body: () async throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(TestThreads.shared) { try await body() }
}
