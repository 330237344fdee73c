namespace Daiko.Cli;

/// <summary>
/// What a command opened for its whole run and hands to code that outlives the call that opened it (an owner's
/// store over a site's data source): closed once the command returns, however it ended, so the database sees its
/// connections closed rather than dropped.
/// </summary>
internal static class CommandResources
{
    private static readonly List<IAsyncDisposable> Owned = [];

    public static T Own<T>(T resource) where T : IAsyncDisposable
    {
        lock (Owned) Owned.Add(resource);
        return resource;
    }

    public static void CloseAll()
    {
        IAsyncDisposable[] owned;
        lock (Owned)
        {
            owned = [.. Owned];
            Owned.Clear();
        }
        foreach (var resource in owned.Reverse())
        {
            try
            {
                resource.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                // The command's outcome is already decided (and its exit code with it): a connection that cannot be closed
                // cleanly is dropped, and said only when asked.
                if (Environment.GetEnvironmentVariable("DAIKO_DEBUG") == "1") Console.Error.WriteLine($"daiko: closing {resource.GetType().Name} failed: {e}");
            }
        }
    }
}
