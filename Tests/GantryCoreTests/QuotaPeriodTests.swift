import Foundation
import GantryCore
import Testing

/// Quota periods are computed by day arithmetic, not `Calendar` (it was too slow per request):
/// they must agree with a UTC Gregorian calendar, month ends and leap days included.
@Suite("Quota periods")
struct QuotaPeriodTests {
    @Test("day and month starts and ends agree with a UTC calendar")
    func agreeWithCalendar() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let samples: [TimeInterval] = [
            0, 1, 86_399, 86_400, 951_782_400 - 1, 951_782_400, 951_868_800,  // 2000-02-29 and around
            1_709_164_800, 1_709_251_199, 1_709_251_200,  // 2024-02-29, 2024-03-01
            1_735_689_599, 1_735_689_600,  // 2024-12-31 23:59:59, 2025-01-01
            1_798_761_600 + 12_345, 4_102_444_800 - 1,  // 2027, 2099-12-31
        ]
        for seconds in samples {
            let date = Date(timeIntervalSince1970: seconds)
            for period in [QuotaPeriod.day, .month] {
                let parts: Set<Calendar.Component> = period == .day ? [.year, .month, .day] : [.year, .month]
                let expected = calendar.date(from: calendar.dateComponents(parts, from: date))!
                #expect(period.start(of: date) == expected, "\(period) start of \(date)")
                let next = calendar.date(byAdding: period == .day ? .day : .month, value: 1, to: expected)!
                #expect(period.end(of: date) == next, "\(period) end of \(date)")
            }
        }
    }
}
