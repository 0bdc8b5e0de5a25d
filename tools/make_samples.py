"""Regenerate the two sample inputs (fictional people, real-looking mess).

    .venv/bin/python tools/make_samples.py

- ``clientes_bogota.csv``: what Spanish-locale Excel writes for "CSV (delimitado por comas)":
  Windows-1252, ``;``, CRLF, two title rows above the header.
- ``crm_export.xlsx``: a CRM export written by openpyxl: a "Clientes" sheet with numeric and
  text cells, a hidden "Config" sheet and a "Notas" sheet without phones.

The expected verdict of every row is in README.md; the comment after each row says it too.
Output is byte-for-byte deterministic.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import openpyxl

HERE = Path(__file__).resolve().parent.parent / "sample_data"
FIXED = dt.datetime(2024, 3, 15, 8, 30, 0)

CSV_TITLE = [
    ["Reporte de clientes - No llamar", "", "", "", ""],
    ["Generado: 15/03/2024 08:30", "", "", "", ""],
    ["Nombre", "Cédula", "Teléfono", "Días de bloqueo", "Observaciones"],
]
CSV_ROWS = [  # row 4 onwards
    ["Andrés Gómez", "1010101010", "3191234567", "30", ""],  # duplicate (xlsx 180 wins)
    ["Beatriz Ramírez", "52111222", "+57 319 123 4568", "30", ""],  # valid
    ["Carlos Peña", "79222333", "(319) 123-4569", "60", ""],  # valid
    ["Diana Suárez", "1020304050", "57-319-1234570", "90", ""],  # valid
    ["Distribuciones El Dorado", "900123456", "601 234 5678", "30", "Fijo Bogotá"],  # valid
    ["Fernando Díaz", "80444555", "3001234567 / 3109876543", "30", "Dos números"],  # 2 valid
    ["Gloria Herrera", "41555666", "3012345678", "0", ""],  # days-zero
    ["Hernán Castro", "19666777", "3023456789", "-5", ""],  # days-negative
    ["Isabel Moreno", "39777888", "3034567890", "15,5", ""],  # days-fractional
    ["Jorge Vargas", "71888999", "3045678901", "quince", ""],  # days-not-a-number
    ["Karen Ortiz", "1030405060", "3056789012", "", "Sin días"],  # missing-days
    ["Luis Rojas", "1040506070", "3,19123E+09", "30", "Excel lo volvió científico"],  # lost
    ["María Torres", "1050607080", "319123", "30", ""],  # too-short
    ["Nicolás Ruiz", "1060708090", "+1 415 555 2671", "30", "Vive en EE. UU."],  # foreign
    ["Olga Mejía", "1070809000", "", "30", "Sin teléfono"],  # missing-phone
    ["Pablo Jiménez", "1080900010", "3191234567", "90", "Repetido"],  # duplicate (180 wins)
    ["Quintín Salazar", "1090001020", "3191234567999", "30", ""],  # too-long
    ["Rosa Cárdenas", "1100102030", "no tiene", "30", ""],  # not-a-number
    ["Sandra Pineda", "1110203040", "3151234567", "3651", ""],  # days-too-large
    ["Tomás Aguilar", "1120304050", "3067890123", "30", ""],  # invalid-number (306)
    ["Ulises Navarro", "1130405060", "3191234567,5", "30", ""],  # not-a-whole-number
    ["Valentina Ríos", "1140506070", "310.123.4567", "45", ""],  # valid
    ["Wilson Cortés", "1150607080", "+57 (310) 123-4568", "45", ""],  # valid
    ["Ximena León", "1160708090", "3161234567", "30", ""],  # valid
    ["Yolanda Parra", "1170809000", " 3171234567 ", " 30 ", ""],  # valid
    ["Zoe Medina", "1180900010", "3181234567", "365", ""],  # valid
    ["Alberto Cruz", "1190001020", "3501234567", "30", ""],  # valid
    ["Bibiana Rincón", "1200102030", "3511234567", "15", ""],  # valid
    ["Camilo Ospina", "1210203040", "3241234567", "30", ""],  # valid
    ["Daniela Giraldo", "1220304050", "3331234567", "30", ""],  # valid
    ["Esteban Mora", "1230405060", "604 234 5678", "60", "Fijo Medellín"],  # valid
    ["Fabiola Reyes", "1240506070", "3191234568", "15", "Ya estaba"],  # duplicate (30 wins)
    ["Gustavo Lozano", "1250607080", "3212345678", "30", ""],  # valid
    ["Iván Pérez", "1260708090", "3222345678", "30", ""],  # valid
    ["", "", "", "", ""],  # blank row: skipped, counted
    ["Julián Acosta", "1270809000", "3102345678", "30.0", ""],  # valid (30)
    ["Karina Duarte", "1280900010", "3112345678", "30", ""],  # valid
    ["Leonardo Ávila", "1290001020", "3122345678", "1", ""],  # valid
    ["Mónica Sierra", "1300102030", "3132345678", "3650", "Máximo"],  # valid
    ["Total de registros: 38", "", "", "", ""],  # missing-phone (a footer line)
]


def write_csv(path: Path) -> None:
    buf = io.StringIO()
    csv.writer(buf, delimiter=";", lineterminator="\r\n").writerows(CSV_TITLE + CSV_ROWS)
    path.write_bytes(buf.getvalue().encode("cp1252"))


XLSX_HEADER = ["ID", "Cliente", "Celular", "Días bloqueo", "Fecha solicitud"]
XLSX_ROWS: list[list[object]] = [  # row 4 onwards
    [1001, "Ana Lucía Prieto", 3201234567, 30, dt.date(2024, 3, 1)],  # valid (numeric cells)
    [1002, "Bernardo Quiroga", "320 123 4568", 60, dt.date(2024, 3, 2)],  # valid
    [1003, "Catalina Uribe", "3211234567\n3221234567", 90, None],  # split: 2 valid
    [1004, "Andrés Gómez", 3191234567, 180, dt.date(2024, 3, 4)],  # valid: longest block
    [1005, "Darío Montoya", 3231234567, "treinta", None],  # days-not-a-number
    [1006, "Elena Sarmiento", 3191234567.5, 30, None],  # not-a-whole-number
    [1007, "Felipe Cárdenas", 3241234568, 0.5, None],  # days-fractional
    [1008, "Gabriela Nieto", None, 30, None],  # missing-phone
    [1009, "Hugo Beltrán", 6012345679, 30, None],  # valid (landline)
    [1010, "Inés Caicedo", 3001234567, 7, None],  # duplicate (the CSV's 30 wins)
    [1011, "Julio Pardo", 3.191234567012346e18, 30, None],  # lost-digits (15+ digits)
    [None, None, None, None, None],  # blank row: skipped, counted
    [1012, "Karla Bonilla", "+57 322 123 4568", 45, dt.date(2024, 3, 12)],  # valid
]


def write_xlsx(path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Clientes"
    ws.append(["Exportación CRM - Solicitudes de no llamar"])
    ws.append(["Fecha de corte: 2024-03-15"])
    ws.append(XLSX_HEADER)
    for row in XLSX_ROWS:
        ws.append(row)
    config = wb.create_sheet("Config")
    config.append(["Parámetro", "Valor"])
    config.append(["servidor", "0002"])
    config.append(["formato", "national"])
    config.sheet_state = "hidden"
    notas = wb.create_sheet("Notas")
    notas.append(["Fecha", "Nota"])
    notas.append([dt.date(2024, 3, 15), "Lista enviada por el área de calidad"])
    wb.properties.created = FIXED
    wb.save(path)
    _fix_zip(path)


def _fix_zip(path: Path) -> None:
    """Fixed timestamps (zip members and the modified date openpyxl stamps)."""
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2024-03-15T08:30:00Z",
                              data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED.timetuple()[:6])
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            out.writestr(fixed, data)


if __name__ == "__main__":
    write_csv(HERE / "clientes_bogota.csv")
    write_xlsx(HERE / "crm_export.xlsx")
    print(f"wrote {HERE / 'clientes_bogota.csv'} and {HERE / 'crm_export.xlsx'}")
