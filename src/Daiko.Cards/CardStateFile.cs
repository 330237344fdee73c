using System.Text.Json;
using System.Text.Json.Serialization;

namespace Daiko.Cards;

/// <summary>The persisted part of a card: failure counters, disabled flag, last known state.</summary>
internal sealed record PersistedCardState
{
    [JsonPropertyName("pin1_failures")] public int Pin1Failures { get; init; }

    [JsonPropertyName("pin2_failures")] public int Pin2Failures { get; init; }

    [JsonPropertyName("disabled")] public bool Disabled { get; init; }

    [JsonPropertyName("state")] public HomeCardState State { get; init; } = HomeCardState.Locked;

    [JsonPropertyName("idle_expires_at")] public DateTimeOffset? IdleExpiresAt { get; init; }
}

/// <summary>
/// Counters that survive restarts and <c>kill -9</c>, updated under an exclusive file lock (threads
/// and processes alike) and written atomically: temp file, fsync, rename, fsync of the directory.
/// A failure is counted before the PIN is tried, so a crash in between cannot give a free attempt.
/// </summary>
internal sealed class CardStateFile
{
    private readonly string _path;
    private readonly string _lockPath;

    public CardStateFile(string path)
    {
        _path = path;
        _lockPath = path + ".lock";
    }

    public PersistedCardState Read()
    {
        if (!File.Exists(_path)) return new PersistedCardState();
        try
        {
            return JsonSerializer.Deserialize<PersistedCardState>(File.ReadAllBytes(_path)) ?? new PersistedCardState();
        }
        catch (JsonException)
        {
            // A corrupt counter file must never reset the counters: treat it as disabled.
            return new PersistedCardState { Disabled = true, State = HomeCardState.Disabled, Pin1Failures = 3, Pin2Failures = 3 };
        }
    }

    /// <summary>Runs <paramref name="action"/> holding the card's exclusive lock.</summary>
    public T Locked<T>(Func<T> action)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            FileStream? lockFile = null;
            try
            {
                lockFile = new FileStream(_lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
                continue;
            }
            using (lockFile)
            {
                return action();
            }
        }
    }

    public void Write(PersistedCardState state)
    {
        var temp = _path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, state);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, _path, overwrite: true);
        FsyncDirectory(Path.GetDirectoryName(_path)!);
    }

    internal static void FsyncDirectory(string directory)
    {
        try
        {
            using var handle = File.OpenHandle(directory, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
            RandomAccess.FlushToDisk(handle);
        }
        catch (UnauthorizedAccessException) { }
        catch (IOException) { }
    }
}
