//! The mailer against a real SMTP server (aiosmtpd, `tests/fixtures/
//! smtp_server.py`), which parses each message with Python's `email`
//! package: parts, attachment, headers and Message-ID as a recipient sees
//! them; 5xx and 4xx replies, an unreachable server, and a relay that
//! stops answering before or after it has the message.

use std::time::Duration;

use kairos_jobs::mail::{Attachment, Email, MailError, Mailer, TlsMode};
use sha2::{Digest, Sha256};

use crate::servers::{closed_port, SmtpServer};

fn email(to: &str) -> Email {
    Email {
        to: vec![to.into()],
        subject: "Prueba".into(),
        text: "Hola".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_email_with_both_parts_and_an_attachment_is_read_back_as_sent() {
    let server = SmtpServer::start().await;
    let mailer = Mailer::from_config(&server.config("Kairos <reports@kairos.test>")).unwrap();
    let pdf = b"%PDF-1.7\n% informe de prueba\n%%EOF\n".to_vec();
    let subject = "Informe semanal de Acme: ¿qué pasó en la semana 48? — 12 % más de tareas";
    let sent = mailer
        .send(&Email {
            from_name: Some("Acme Analítica".into()),
            to: vec!["Ana Pérez <ana@cliente.test>".into(), "luis@cliente.test".into()],
            subject: subject.into(),
            text: "Resumen ejecutivo: la actividad creció un 12 %.\n\nÁreas de atención: ninguna.".into(),
            html: Some("<h1>Resumen ejecutivo</h1><p>La actividad creció un <b>12 %</b>.</p>".into()),
            attachments: vec![Attachment {
                filename: "informe-2026-W48.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: pdf.clone(),
            }],
            message_id: Some("report-acme-2026-W48@kairos.test".into()),
            reply_to: Some("cs@acme.test".into()),
            headers: vec![("X-Kairos-Report".into(), "acme/2026-W48".into())],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.message_id, "<report-acme-2026-W48@kairos.test>");
    assert!(sent.response.starts_with("250"), "{}", sent.response);

    let got = server.wait_for(1, Duration::from_secs(10)).await;
    let m = &got[0];
    assert_eq!(m["subject"], subject);
    assert_eq!(m["message_id"], "<report-acme-2026-W48@kairos.test>");
    assert_eq!(m["from"], "Acme Analítica <reports@kairos.test>");
    assert_eq!(m["mail_from"], "reports@kairos.test");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ana@cliente.test", "luis@cliente.test"])
    );
    assert!(
        m["to"].as_str().unwrap().contains("Ana Pérez <ana@cliente.test>"),
        "{}",
        m["to"]
    );
    assert_eq!(m["headers"]["X-Kairos-Report"], "acme/2026-W48");
    assert_eq!(m["headers"]["Reply-To"], "cs@acme.test");
    assert_eq!(m["content_type"], "multipart/mixed");
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .starts_with("Resumen ejecutivo: la actividad creció un 12 %."),
        "{}",
        m["text"]
    );
    assert!(m["html"].as_str().unwrap().contains("<b>12 %</b>"), "{}", m["html"]);
    let a = &m["attachments"][0];
    assert_eq!(a["filename"], "informe-2026-W48.pdf");
    assert_eq!(a["content_type"], "application/pdf");
    assert_eq!(a["size"], pdf.len());
    assert_eq!(a["sha256"], hex::encode(Sha256::digest(&pdf)));
    assert_eq!(m["attachments"].as_array().unwrap().len(), 1);
    // The subject travels as RFC 2047 encoded words, not raw 8-bit.
    let raw = server.raw(1);
    let headers = String::from_utf8_lossy(&raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()]).into_owned();
    assert!(headers.is_ascii(), "{headers}");
}

#[tokio::test]
async fn a_text_only_email_gets_a_generated_message_id() {
    let server = SmtpServer::start().await;
    let mailer = Mailer::from_config(&server.config("reports@kairos.test")).unwrap();
    let sent = mailer.send(&email("ana@cliente.test")).await.unwrap();
    assert!(sent.message_id.ends_with("@kairos.test>"), "{}", sent.message_id);
    let m = &server.wait_for(1, Duration::from_secs(10)).await[0];
    assert_eq!(m["message_id"], sent.message_id.as_str());
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["html"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_5xx_reply_is_permanent() {
    let server = SmtpServer::start().await;
    let mailer = Mailer::from_config(&server.config("reports@kairos.test")).unwrap();
    match mailer.send(&email("bounce@cliente.test")).await {
        Err(MailError::Permanent {
            code: Some(550),
            reason,
        }) => assert!(reason.contains("unavailable"), "{reason}"),
        other => panic!("expected a permanent 550, got {other:?}"),
    }
    match mailer.send(&email("reject-data@cliente.test")).await {
        Err(MailError::Permanent { code: Some(554), .. }) => {}
        other => panic!("expected a permanent 554, got {other:?}"),
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_4xx_reply_is_transient() {
    let server = SmtpServer::start().await;
    let mailer = Mailer::from_config(&server.config("reports@kairos.test")).unwrap();
    match mailer.send(&email("tempfail@cliente.test")).await {
        Err(e @ MailError::Transient { code: Some(451), .. }) => assert!(e.is_transient()),
        other => panic!("expected a transient 451, got {other:?}"),
    }
    // The next message goes through.
    mailer.send(&email("ana@cliente.test")).await.unwrap();
    server.wait_for(1, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let mut config = SmtpServer::config_for_port(closed_port());
    config.timeout = Duration::from_secs(2);
    let mailer = Mailer::from_config(&config).unwrap();
    match mailer.send(&email("ana@cliente.test")).await {
        Err(MailError::Transient { code: None, .. }) => {}
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

/// A relay that has the whole message and does not answer within `[smtp]
/// timeout` may still deliver it: the outcome is `Unknown`, which callers
/// promising "at most once" do not re-send. A relay that never greets has
/// nothing: that is transient, and the timeout bounds the wait.
#[tokio::test]
async fn silence_after_the_message_is_unknown_and_before_it_transient() {
    let server = SmtpServer::start().await;
    let mut config = server.config("reports@kairos.test");
    config.timeout = Duration::from_secs(2);
    let mailer = Mailer::from_config(&config).unwrap();
    match mailer.send(&email("hold-ana@cliente.test")).await {
        Err(e @ MailError::Unknown { .. }) => assert!(!e.is_transient(), "{e}"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert!(server.held(1), "the server has the message and withholds its answer");
    assert_eq!(server.messages().len(), 1);

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let mut config = SmtpServer::config_for_port(port);
    config.timeout = Duration::from_secs(1);
    let mailer = Mailer::from_config(&config).unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(30), mailer.send(&email("ana@cliente.test")))
        .await
        .expect("`[smtp] timeout` bounds the wait for the greeting");
    match sent {
        Err(MailError::Transient { code: None, reason }) => assert!(reason.contains("no answer"), "{reason}"),
        other => panic!("expected a transient failure, got {other:?}"),
    }
    accepting.abort();
}

#[tokio::test]
async fn starttls_and_implicit_tls_verify_the_server_certificate() {
    for mode in [TlsMode::Starttls, TlsMode::Tls] {
        let server = SmtpServer::start_with(mode).await;
        // Trusting the server's CA (`ca_file`): sent and read back.
        let mailer = Mailer::from_config(&server.config("reports@kairos.test")).unwrap();
        mailer
            .send(&email("ana@cliente.test"))
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(
            server.wait_for(1, Duration::from_secs(10)).await[0]["subject"],
            "Prueba"
        );
        // With the system's roots only, the self-signed certificate is refused.
        let untrusting = Mailer::from_config(&kairos_jobs::mail::SmtpConfig {
            ca_file: None,
            ..server.config("reports@kairos.test")
        })
        .unwrap();
        match untrusting.send(&email("ana@cliente.test")).await {
            Err(MailError::Transient { code: None, reason }) => {
                assert!(reason.to_lowercase().contains("certificate"), "{mode:?}: {reason}")
            }
            other => panic!("{mode:?}: expected a TLS failure, got {other:?}"),
        }
        assert_eq!(server.messages().len(), 1);
    }
}
