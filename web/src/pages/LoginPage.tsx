import { useState, type FormEvent } from "react";

import { login } from "../app/api.js";
import { Logo } from "../components/Logo.js";
import type { Me } from "../model/validate.js";

/** Email and password; on success the app takes over. */
export function LoginPage({ notice, onLoggedIn }: { notice: string | null; onLoggedIn: (me: Me) => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    login(email.trim(), password)
      .then(onLoggedIn)
      .catch((e: unknown) => {
        setError(e instanceof Error ? e.message : "Could not log in.");
        setBusy(false);
      });
  };

  return (
    <main className="login" data-testid="login-page">
      <form className="login__card" onSubmit={submit} aria-labelledby="login-title">
        <div className="login__brand">
          <Logo />
          <span>Pulse</span>
        </div>
        <h1 id="login-title" className="login__title">
          Sign in to your operations dashboard
        </h1>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <label className="field">
          <span className="field__label">Email</span>
          <input
            className="input"
            type="email"
            name="email"
            autoComplete="username"
            required
            autoFocus
            value={email}
            onChange={(e) => setEmail(e.currentTarget.value)}
          />
        </label>
        <label className="field">
          <span className="field__label">Password</span>
          <input
            className="input"
            type="password"
            name="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {error && (
          <p className="form-error" role="alert" data-testid="login-error">
            {error}
          </p>
        )}
        <button type="submit" className="button button--primary button--block" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
