using Microsoft.Playwright;
using SkiaSharp;
using ZXing;
using ZXing.Common;

namespace Daiko.Web.Tests;

/// <summary>
/// A home server with its console, and Debian's chromium driven by Playwright (no browser download:
/// the executable is /usr/bin/chromium, or DAIKO_CHROMIUM).
/// </summary>
public sealed class ConsoleSystem : HomeWithConsole
{
    public IPlaywright Playwright { get; private set; } = null!;

    public IBrowser Browser { get; private set; } = null!;

    public static string ChromiumPath => Environment.GetEnvironmentVariable("DAIKO_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        Browser = await Playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = ChromiumPath, Headless = true, Args = ["--no-sandbox"] });
    }

    /// <summary>A fresh browser profile (no cookies), desktop-sized unless told otherwise.</summary>
    public Task<IBrowserContext> NewContextAsync(int width = 1280, int height = 860, bool mobile = false) =>
        Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = height }, IsMobile = mobile, HasTouch = mobile, DeviceScaleFactor = mobile ? 2 : 1 });

    /// <summary>A page logged in through a fresh one-time link.</summary>
    public async Task<IPage> LoggedInPageAsync(IBrowserContext context)
    {
        var page = await context.NewPageAsync();
        var response = await page.GotoAsync(await LinkAsync());
        Assert.Equal(200, response!.Status);
        Assert.EndsWith("/card", page.Url, StringComparison.Ordinal);
        return page;
    }

    /// <summary>
    /// Decodes the QR code shown by <paramref name="image"/>, from a screenshot of it once the browser has
    /// decoded the image (complete, with a width); on a loaded machine it may still not be painted at the
    /// first screenshot, so it is taken again, up to eight times over about ten seconds.
    /// </summary>
    public static async Task<string> DecodeQrAsync(ILocator image)
    {
        await image.Page.WaitForFunctionAsync("e => e.complete && e.naturalWidth > 0", await image.ElementHandleAsync(), new() { Timeout = 15_000 });
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return DecodeQr(await image.ScreenshotAsync(new() { Animations = ScreenshotAnimations.Disabled }));
            }
            catch (InvalidOperationException) when (attempt < 8)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(300 * attempt));
            }
        }
    }

    /// <summary>Decodes the QR code in a PNG (a screenshot of the rendered image).</summary>
    public static string DecodeQr(byte[] png)
    {
        using var decoded = SKBitmap.Decode(png);
        using var bitmap = decoded.ColorType == SKColorType.Bgra8888 ? decoded.Copy() : decoded.Copy(SKColorType.Bgra8888);
        var source = new RGBLuminanceSource(bitmap.Bytes, bitmap.Width, bitmap.Height, RGBLuminanceSource.BitmapFormat.BGRA32);
        var reader = new BarcodeReaderGeneric { Options = new DecodingOptions { PossibleFormats = [BarcodeFormat.QR_CODE], TryHarder = true } };
        var result = reader.Decode(source) ?? throw new InvalidOperationException("no QR code found in the screenshot");
        return result.Text;
    }

    public override async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.DisposeAsync();
        Playwright?.Dispose();
        await base.DisposeAsync();
    }
}
