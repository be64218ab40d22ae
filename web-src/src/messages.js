// Texts the script shows, in the page's language (<html lang>). The page
// carries them from the server's catalog (with the institution's names) in
// <template id="certgate-texts" data-KEY="...">; this table is the fallback for
// a page without it, in the same language. Texts of the server's errors come
// from the server.

const TEXTS = {
  ja: {
    needLogin: "ログインIDを入力してください。",
    needCode: "発行コードを入力してください。",
    passwordShort: "パスワードは8文字以上で入力してください。",
    passwordMismatch: "確認用のパスワードが一致しません。",
    noCrypto: "このブラウザーでは証明書を作成できません。最新のMicrosoft Edge、Google Chrome、Firefox、Safariをご利用ください。",
    generating: "このパソコンで鍵を作成しています…",
    requesting: "証明書を申請しています…",
    packaging: "証明書ファイルを作成しています…",
    done: "証明書ファイルを作成しました。",
    network: "通信に失敗しました。時間をおいて、もう一度お試しください。",
    badAnswer: "サーバーの応答を処理できませんでした。時間をおいて、もう一度お試しください。",
    keyMismatch: "受け取った証明書がこのパソコンの鍵と一致しません。お取引店にお問い合わせください。",
    failed: "証明書を作成できませんでした。",
    busy: "リクエストが多すぎます。しばらく待ってから、もう一度お試しください。",
  },
  en: {
    needLogin: "Enter your login ID.",
    needCode: "Enter your issuance code.",
    passwordShort: "The password must be at least 8 characters long.",
    passwordMismatch: "The two passwords do not match.",
    noCrypto: "This browser cannot create the certificate. Please use a current Microsoft Edge, Google Chrome, Firefox or Safari.",
    generating: "Creating the key on this PC…",
    requesting: "Requesting the certificate…",
    packaging: "Creating the certificate file…",
    done: "The certificate file has been created.",
    network: "The connection failed. Please try again later.",
    badAnswer: "The server's answer could not be processed. Please try again later.",
    keyMismatch: "The certificate received does not match the key on this PC. Please contact your branch.",
    failed: "The certificate could not be created.",
    busy: "Too many requests. Please wait a moment and try again.",
  },
};

export function pageLang() {
  const lang = (document.documentElement.getAttribute("lang") || "ja").slice(0, 2);
  return TEXTS[lang] ? lang : "ja";
}

export function text(key) {
  const fromPage = document.getElementById("certgate-texts");
  const value = fromPage ? fromPage.getAttribute(`data-${key}`) : null;
  if (value) {
    return value;
  }
  return TEXTS[pageLang()][key] || key;
}
