// What real clients send in Accept for an <img> request (and their hints), used by the tests
// and the README table. Sources: each browser's image Accept header as sent by the version named.
export const BROWSERS = [
  { name: 'Chrome 120+', accept: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8' },
  { name: 'Firefox 128+', accept: 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5' },
  { name: 'Safari 16', accept: 'image/webp,image/avif,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5' },
  { name: 'Safari 17', accept: 'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5' },
  { name: 'Android 4.4 WebView', accept: 'image/webp,*/*;q=0.8' },
  { name: 'curl', accept: '*/*' },
];
