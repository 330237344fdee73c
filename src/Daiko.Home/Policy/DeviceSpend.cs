using System.Data.Common;
using Daiko.Home.Storage;

namespace Daiko.Home.Policy;

/// <summary>
/// A device's daily spend limit, charged inside the purse's own transaction (<see cref="Money.PurseLedger.Pay"/>):
/// the payment and the day's running total commit together or not at all, so concurrent payments cannot
/// pass the limit between a check and a debit. Days are UTC days; a limit applies to each currency.
/// </summary>
public sealed record DeviceSpend(string DeviceName, long LimitPerDay, TimeProvider Time)
{
    /// <summary>Adds <paramref name="amount"/> to today's total of this device, or refuses when that passes the limit.</summary>
    public void Charge(DbConnection connection, DbTransaction transaction, long amount, string currency)
    {
        var day = Time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        Run(connection, transaction, """
            CREATE TABLE IF NOT EXISTS device_spend (device TEXT NOT NULL, day TEXT NOT NULL, currency TEXT NOT NULL,
                amount BIGINT NOT NULL, PRIMARY KEY (device, day, currency))
            """);
        long spent;
        using (var select = connection.CreateCommand())
        {
            select.Transaction = transaction;
            select.CommandText = "SELECT amount FROM device_spend WHERE device = @d AND day = @day AND currency = @c";
            SqlDevicePolicyStore.Add(select, "@d", DeviceName);
            SqlDevicePolicyStore.Add(select, "@day", day);
            SqlDevicePolicyStore.Add(select, "@c", currency);
            spent = select.ExecuteScalar() is { } value and not DBNull ? Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        }
        if (amount > LimitPerDay - spent)
        {
            throw new PolicyRefusedException(PolicyRule.SpendLimit,
                $"this device may spend {LimitPerDay} {currency} a day and has spent {spent} today: {amount} more is over its spend limit", new PolicyRemedy("raise it", "--spend-limit"));
        }
        Run(connection, transaction, "INSERT INTO device_spend(device, day, currency, amount) VALUES (@d, @day, @c, @a) ON CONFLICT(device, day, currency) DO UPDATE SET amount = @a",
            ("@d", DeviceName), ("@day", day), ("@c", currency), ("@a", spent + amount));
    }

    private static void Run(DbConnection connection, DbTransaction transaction, string sql, params (string, object)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var (name, value) in parameters) SqlDevicePolicyStore.Add(command, name, value);
        command.ExecuteNonQuery();
    }
}
