import { useEffect, useState, type FormEvent, type InputHTMLAttributes } from "react";

import { login } from "../app/api.js";
import { Logo } from "../components/Logo.js";
import type { Me } from "../model/validate.js";

/** Email and password; on success the app takes over. */
export function LoginPage({ notice, onLoggedIn }: { notice: string | null; onLoggedIn: (me: Me) => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // After a logout or a lost session, the tab no longer names the page left.
  useEffect(() => {
    document.title = "Sign in · Pulse";
  }, []);

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
        <Field label="Email" type="email" name="email" autoComplete="username" autoFocus value={email} onChange={setEmail} />
        <Field label="Password" type="password" name="password" autoComplete="current-password" value={password} onChange={setPassword} />
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

/** A required text input with its visible label. */
function Field({ label, onChange, ...input }: { label: string; onChange: (value: string) => void } & Omit<InputHTMLAttributes<HTMLInputElement>, "onChange" | "className" | "required">) {
  return (
    <label className="field">
      <span className="field__label">{label}</span>
      <input className="input" required {...input} onChange={(e) => onChange(e.currentTarget.value)} />
    </label>
  );
}
