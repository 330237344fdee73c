using Daiko.Protocol;

namespace Daiko.Home.Handlers;

/// <summary>What fits in one reply page (<see cref="ControlProtocol.PageBytes"/>, so that a reply stays well under a frame).</summary>
internal static class ReplyPage
{
    /// <summary>The leading <paramref name="items"/> that fit in a page (at least one), and whether any were left out.</summary>
    public static (List<T> Items, bool More) Take<T>(IEnumerable<T> items, Func<T, int> bytes)
    {
        var page = new List<T>();
        var used = 0L;
        foreach (var item in items)
        {
            var size = bytes(item);
            if (page.Count > 0 && used + size > ControlProtocol.PageBytes) return (page, true);
            page.Add(item);
            used += size;
        }
        return (page, false);
    }

    /// <summary>A text's size in a page: its UTF-8 bytes and its framing.</summary>
    public static int Size(string text) => System.Text.Encoding.UTF8.GetByteCount(text) + 8;
}
