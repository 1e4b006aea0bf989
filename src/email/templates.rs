//! What each email says, in plain text and HTML. Every value from outside (names, titles,
//! addresses) is escaped in the HTML; links are absolute, built on the server's public URL.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use super::Email;

/// Wraps a body in the shared HTML layout.
fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;color:#111\">{body}\
         <p style=\"color:#666;font-size:.85rem\">Sent by Aether.</p></body></html>",
        text(title)
    )
}

fn button(url: &str, label: &str) -> String {
    format!(
        "<p><a href=\"{}\" style=\"display:inline-block;padding:.6rem 1rem;background:#5b3df5;color:#fff;\
         border-radius:.4rem;text-decoration:none\">{}</a></p><p style=\"font-size:.85rem\">Or open {}</p>",
        attr(url),
        text(label),
        text(url)
    )
}

pub fn verify_email(to: &str, username: &str, url: &str) -> Email {
    let subject = "Confirm your email address".to_owned();
    Email {
        to: to.to_owned(),
        text: format!(
            "Hi {username},\n\nConfirm that this is your email address by opening this link (it works for 24 hours):\n\n{url}\n\n\
             If you did not sign up for Aether, ignore this message."
        ),
        html: layout(
            &subject,
            &format!(
                "<p>Hi {},</p><p>Confirm that this is your email address (the link works for 24 hours).</p>{}\
                 <p>If you did not sign up for Aether, ignore this message.</p>",
                text(username),
                button(url, "Confirm my address")
            ),
        ),
        subject,
    }
}

pub fn password_reset(to: &str, username: &str, url: &str) -> Email {
    let subject = "Reset your password".to_owned();
    Email {
        to: to.to_owned(),
        text: format!(
            "Hi {username},\n\nSomeone (we hope you) asked to reset the password of your Aether account. \
             Choose a new one here (the link works once, for one hour):\n\n{url}\n\n\
             If it was not you, ignore this message: your password stays as it is."
        ),
        html: layout(
            &subject,
            &format!(
                "<p>Hi {},</p><p>Someone (we hope you) asked to reset the password of your Aether account. \
                 The link works once, for one hour.</p>{}<p>If it was not you, ignore this message: your password \
                 stays as it is.</p>",
                text(username),
                button(url, "Choose a new password")
            ),
        ),
        subject,
    }
}

pub fn change_email(to: &str, username: &str, url: &str) -> Email {
    let subject = "Confirm your new email address".to_owned();
    Email {
        to: to.to_owned(),
        text: format!(
            "Hi {username},\n\nYou asked to use this address for your Aether account. Confirm it here (the link \
             works for 24 hours):\n\n{url}\n\nUntil you do, your account keeps its old address."
        ),
        html: layout(
            &subject,
            &format!(
                "<p>Hi {},</p><p>You asked to use this address for your Aether account (the link works for 24 \
                 hours).</p>{}<p>Until you confirm, your account keeps its old address.</p>",
                text(username),
                button(url, "Use this address")
            ),
        ),
        subject,
    }
}

pub fn go_live(to: &str, username: &str, channel: &str, title: &str, url: &str, settings_url: &str) -> Email {
    let subject = if title.is_empty() { format!("{channel} is live") } else { format!("{channel} is live: {title}") };
    Email {
        to: to.to_owned(),
        text: format!(
            "Hi {username},\n\n{channel} just went live{}.\n\nWatch: {url}\n\n\
             You get this because you follow {channel}. Change what you get: {settings_url}",
            if title.is_empty() { String::new() } else { format!(": {title}") }
        ),
        html: layout(
            &subject,
            &format!(
                "<p>Hi {},</p><p><strong>{}</strong> just went live{}.</p>{}\
                 <p style=\"font-size:.85rem\">You get this because you follow {}. <a href=\"{}\">Change what you get</a>.</p>",
                text(username),
                text(channel),
                if title.is_empty() { String::new() } else { format!(": {}", text(title)) },
                button(url, "Watch now"),
                text(channel),
                attr(settings_url)
            ),
        ),
        subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_comes_from_users_is_escaped_in_the_html() {
        let email = go_live(
            "a@b.co",
            "<b>eve</b>",
            "evil_tv",
            "<script>alert(1)</script>",
            "http://x/evil_tv",
            "http://x/settings\"><x",
        );
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(!email.html.contains("<b>eve"));
        assert!(!email.html.contains("\"><x"));
        assert!(email.text.contains("<script>alert(1)</script>"), "plain text stays as written");
        assert_eq!(email.subject, "evil_tv is live: <script>alert(1)</script>");
    }
}
