//! A browser-less dashboard client that keeps its cookies by hand, to see every Set-Cookie
//! and to send exactly what a browser's cookie jar would (one origin, `Path=/`).

use std::time::Duration;

use anyhow::Result;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

/// A browser-less client that keeps cookies by hand, to see every Set-Cookie.
pub struct Browser {
    base: String,
    pub http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    /// Every cookie held, as (name, value).
    pub fn cookies(&self) -> &[(String, String)] {
        &self.cookies
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    pub fn keep(&mut self, resp: &reqwest::Response) -> Vec<String> {
        let raw: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &raw {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((n, v)) = pair.split_once('=') {
                self.set(n, v);
            }
        }
        raw
    }

    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, String, Option<String>)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.header())
            .send()
            .await?;
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, resp.text().await?, location))
    }

    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, String, Option<String>, Vec<String>)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.header())
            .form(form)
            .send()
            .await?;
        let set = self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, resp.text().await?, location, set))
    }

    /// The value of `<input type="hidden" name="csrf" value="…">` in a page.
    pub fn csrf_in(html: &str) -> String {
        let marker = "name=\"csrf\" value=\"";
        html.split(marker)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn login_form_csrf(&mut self) -> Result<String> {
        let (_, html, _) = self.get("/login").await?;
        Ok(Self::csrf_in(&html))
    }

    pub async fn signup(&mut self, email: &str, password: &str) -> Result<u16> {
        let (_, html, _) = self.get("/signup").await?;
        let csrf = Self::csrf_in(&html);
        let (status, _, _, _) = self
            .post(
                "/signup",
                &[("csrf", &csrf), ("email", email), ("password", password)],
            )
            .await?;
        Ok(status)
    }
}
