// Entry point: take the token out of the URL first (before anything could log or share the
// address), then render the app.
import { render } from 'preact';
import { takeTokenFromUrl } from './api.js';
import { App } from './components/App.js';
import 'uplot/dist/uPlot.min.css';
import './style.css';

takeTokenFromUrl();
const root = document.getElementById('app');
if (root === null) throw new Error('index.html has no #app element');
render(<App />, root);
