# ruff: noqa: RUF001 - Chinese texts use full-width punctuation on purpose
"""The hosted cashier page's words in its two languages. Templates look texts up by key (`t.pay`);
a key missing from one language is a test failure (tests/unit/cashier/test_page_text.py), not a blank."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "收银台",
        "pay_to": "付款给",
        "order": "订单",
        "amount": "应付金额",
        "time_left": "剩余支付时间",
        "choose_method": "选择支付方式",
        "recommended": "推荐",
        "pay": "确认支付",
        "card_number": "卡号",
        "card_expiry_month": "有效期（月）",
        "card_expiry_year": "有效期（年）",
        "card_cvc": "安全码",
        "card_holder": "持卡人姓名（可选）",
        "card_note": "卡号经加密后直接交给 payhub 的卡片保险库，商户不会看到完整卡号。",
        "scan_qr": "请使用手机扫描二维码完成支付",
        "qr_alt": "付款二维码",
        "qr_expires": "二维码有效期至",
        "redirecting": "正在前往支付页面…",
        "continue": "继续",
        "use_another": "更换支付方式",
        "checking_result": "正在确认支付结果…若尚未完成支付，请点击继续。",
        "otp_title": "安全验证",
        "otp_sent": "验证码已发送至",
        "otp_code": "验证码",
        "otp_attempts": "剩余尝试次数",
        "otp_wrong": "验证码不正确，请重新输入。",
        "otp_bank_title": "银行验证",
        "otp_bank_hint": "请输入发卡银行通过短信发送的验证码。",
        "verify": "验证",
        "processing": "正在处理，请稍候…",
        "succeeded": "支付成功",
        "returning": "正在返回商户…",
        "return_now": "返回商户",
        "failed": "支付未成功",
        "try_another": "请选择其他支付方式重试。",
        "failed_final": "此订单无法继续支付。",
        "expired": "支付已超时",
        "expired_detail": "本次收银台会话已过期，无法继续支付。请返回商户重新下单。",
        "not_found": "找不到该收银台会话。",
        "no_methods": "当前没有可用的支付方式。",
        "unavailable": "服务暂时不可用，请稍后重试。",
        "secure": "由 payhub 提供安全支付",
        "waiting_scan": "等待扫码支付…",
        "open_app": "请在应用中完成支付…",
        "notice_otp_wrong": "验证码不正确，请重新输入。",
        "notice_invalid_card_number": "卡号无效，请检查后重新输入。",
        "notice_invalid_expiry": "有效期无效或卡片已过期。",
        "notice_invalid_cvc": "安全码应为 3 或 4 位数字。",
        "notice_invalid_input": "输入有误，请检查后重试。",
        "notice_form_expired": "页面已失效，请重试。",
        "notice_expired": "支付已超时，无法继续支付。",
        "notice_not_now": "当前无法提交，请稍候再试。",
        "notice_method_unavailable": "该支付方式暂不可用，请选择其他方式。",
        "notice_busy": "正在处理上一次提交，请稍候。",
        "notice_unavailable": "服务暂时不可用，请稍后重试。",
    },
    "en": {
        "title": "Checkout",
        "pay_to": "Pay to",
        "order": "Order",
        "amount": "Amount due",
        "time_left": "Time left to pay",
        "choose_method": "Choose a payment method",
        "recommended": "Recommended",
        "pay": "Pay now",
        "card_number": "Card number",
        "card_expiry_month": "Expiry month",
        "card_expiry_year": "Expiry year",
        "card_cvc": "Security code",
        "card_holder": "Cardholder name (optional)",
        "card_note": "Your card number goes straight to payhub's encrypted card vault; the merchant never sees it.",
        "scan_qr": "Scan the QR code with your phone to pay",
        "qr_alt": "Payment QR code",
        "qr_expires": "QR code valid until",
        "redirecting": "Taking you to the payment page…",
        "continue": "Continue",
        "use_another": "Use another payment method",
        "checking_result": "Checking the payment result… If you have not paid yet, press Continue.",
        "otp_title": "Security check",
        "otp_sent": "A code was sent to",
        "otp_code": "One-time code",
        "otp_attempts": "Attempts left",
        "otp_wrong": "That code is not right. Please try again.",
        "otp_bank_title": "Your bank's verification",
        "otp_bank_hint": "Enter the one-time code your card's bank sent you.",
        "verify": "Verify",
        "processing": "Processing, please wait…",
        "succeeded": "Payment successful",
        "returning": "Taking you back to the merchant…",
        "return_now": "Back to the merchant",
        "failed": "Payment not completed",
        "try_another": "Please try another payment method.",
        "failed_final": "This order can no longer be paid.",
        "expired": "Checkout expired",
        "expired_detail": "This checkout session has expired and can no longer be paid. "
                          "Please return to the merchant and order again.",
        "not_found": "This checkout session does not exist.",
        "no_methods": "No payment method is available right now.",
        "unavailable": "The service is temporarily unavailable. Please try again shortly.",
        "secure": "Secure payment by payhub",
        "waiting_scan": "Waiting for you to scan and pay…",
        "open_app": "Complete the payment in the app…",
        "notice_otp_wrong": "That code is not right. Please try again.",
        "notice_invalid_card_number": "That card number is not valid. Please check it and try again.",
        "notice_invalid_expiry": "The expiry date is not valid or the card has expired.",
        "notice_invalid_cvc": "The security code is 3 or 4 digits.",
        "notice_invalid_input": "Something in the form is not right. Please check it and try again.",
        "notice_form_expired": "This page was out of date. Please try again.",
        "notice_expired": "This checkout has expired and can no longer be paid.",
        "notice_not_now": "This cannot be submitted right now. Please wait a moment.",
        "notice_method_unavailable": "That method is not available right now. Please choose another.",
        "notice_busy": "Your previous submission is still being processed.",
        "notice_unavailable": "The service is temporarily unavailable. Please try again shortly.",
    },
}


class Texts:
    """Attribute access for templates: `t.pay`."""

    def __init__(self, locale: str) -> None:
        self.locale = locale
        self._texts = TEXTS[locale]

    def __getitem__(self, key: str) -> str:
        return self._texts[key]

    def __getattr__(self, key: str) -> str:
        try:
            return self._texts[key]
        except KeyError:
            raise AttributeError(key) from None
