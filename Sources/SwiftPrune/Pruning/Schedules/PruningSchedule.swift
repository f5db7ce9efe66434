/// When to update pruning masks during training, and to which sparsity — the
/// contract of TensorFlow Model Optimization's pruning schedules.
public protocol PruningSchedule: Sendable {
    /// First step at which masks are updated (>= 0).
    var beginStep: Int { get }
    /// Last step at which masks may be updated; -1 means never stop.
    var endStep: Int { get }
    /// Masks are updated every `frequency` steps from `beginStep` (> 0).
    var frequency: Int { get }
    /// The sparsity the schedule asks for at `step`.
    func sparsity(at step: Int) -> Double
}

extension PruningSchedule {
    /// Whether masks are updated at `step`: `beginStep <= step <= endStep`
    /// (or no end) and `(step - beginStep) % frequency == 0`.
    public func shouldPrune(at step: Int) -> Bool {
        let inRange = step >= beginStep && (endStep < 0 || step <= endStep)
        return inRange && (step - beginStep) % frequency == 0
    }
}

/// Checks the step parameters shared by every schedule, with TFMOT's rules.
func validateScheduleSteps(beginStep: Int, endStep: Int, frequency: Int, allowEndless: Bool) throws {
    guard beginStep >= 0 else { throw SwiftPruneError.value("begin_step must be >= 0, got \(beginStep)") }
    if endStep == -1 {
        guard allowEndless else {
            throw SwiftPruneError.value("end_step must be given (>= begin_step); -1 (prune forever) is not allowed here")
        }
    } else {
        guard endStep >= 0 else { throw SwiftPruneError.value("end_step must be -1 or >= 0, got \(endStep)") }
        guard endStep >= beginStep else {
            throw SwiftPruneError.value("end_step (\(endStep)) must be >= begin_step (\(beginStep))")
        }
    }
    guard frequency > 0 else { throw SwiftPruneError.value("frequency must be > 0, got \(frequency)") }
}

func validateScheduleSparsity(_ value: Double, _ name: String) throws {
    guard value >= 0 && value <= 1 else { throw SwiftPruneError.value("\(name) must be in [0, 1], got \(value)") }
}
